"""``kdsr-eval``: PSNR / SSIM (and LPIPS) of KDSR checkpoints and bicubic, as the paper's tables.

    kdsr-eval -m KDSRsM_iso_x4.pt --set sets/Set5_g8 --set sets/Urban100_g8
    kdsr-eval -m KDSRS-GAN.pth KDSRT-rec.pth --lq AIM2019/LR --gt AIM2019/HR --lpips-weights vgg16-397923af.pth

Data: ``--set DIR``, a folder written by ``kdsr-testset`` (``protocol.json`` gives the scale and
the degradation tags, ``HR/`` the ground truth, one LR folder per tag), and/or ``--lq DIR --gt
DIR`` paired folders (files matched by stem; a GT larger than scale x LR by less than the scale
is cropped at the bottom/right, as ``kdsr-testset`` crops its HR).

Protocol (the authors' test code, KDSR-GAN's ``Metric/PSNR.py``): SR outputs are quantised to
8 bits; PSNR and SSIM are BasicSR's ``calculate_psnr`` / ``calculate_ssim`` on the Y channel with
a border crop of the scale (``--crop`` to change it). LPIPS (``lpips`` package, AlexNet or VGG16
backbone read from a local torchvision weights file) compares the whole RGB images in [-1, 1].
A set's score is the mean over its degradations of the mean over its images. Students see the
LR image only; a teacher (``BlindSR_TA``) is an oracle: its encoder is given the HR image, and
its row says so. The bicubic row is MATLAB bicubic (BasicSR's ``matlab_functions.imresize``).
Students run in fp32 through ``KDSRUpscaler`` (one IDR per image; ``--tile`` for large images),
teachers untiled. Nothing is downloaded.
"""
import argparse
import csv
import json
import os
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils.matlab_functions import imresize
from tqdm import tqdm

from kdsr_arch.checkpoint import load_kdsr

from .errors import MissingFileError, OptionError, tool
from .io import IMG_EXTS, ensure_writable_folder, first_line, is_image_name, write_atomic
from .upscaler import KDSRUpscaler, pick_device

TEACHER_NOTE = 'teacher, HR oracle'
# LPIPS backbones by the kernel size of torchvision's first conv (features.0.weight)
LPIPS_NETS = {11: ('alex', 'AlexNet'), 3: ('vgg', 'VGG16')}


def read_image(path):
    """Read an image as an 8-bit BGR array (OpenCV's IMREAD_COLOR); ValueError with the reason if unusable."""
    if not os.path.isfile(path):
        raise ValueError('no such file')
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError('not an image, truncated, or a format OpenCV cannot read')
    return img


def bicubic_upsample(lr, scale):
    """MATLAB bicubic upsampling (BasicSR's ``imresize``) of an 8-bit image, rounded to 8 bits."""
    out = imresize(lr.astype(np.float32) / 255., scale)
    return np.clip(out * 255., 0, 255).round().astype(np.uint8)


def _to_tensor(img, device):
    """H x W x 3 BGR uint8 -> (1, 3, H, W) RGB float32 in [0, 1] on ``device``."""
    rgb = np.ascontiguousarray(img[:, :, ::-1]).astype(np.float32) / 255.
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device)


def _to_image(t):
    """(1, 3, H, W) RGB float tensor in [0, 1] -> H x W x 3 BGR uint8."""
    arr = t[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()[:, :, ::-1] * 255.
    return np.ascontiguousarray(arr.round().astype(np.uint8))


class Method:
    """One row of the table: bicubic, a KDSR student or a KDSR teacher (oracle).

    Args:
        path (str | None): A KDSR checkpoint (any format ``load_kdsr`` reads); None: bicubic.
        device (torch.device): Where the net runs.
        tile (int): LR tile size for students (0: whole image unless it does not fit).
    """

    def __init__(self, path=None, device=None, tile=0):
        self.path = path
        if path is None:
            self.name, self.kind, self.scale, self.spec = 'Bicubic', 'bicubic', None, None
            return
        self.name = os.path.splitext(os.path.basename(path))[0]
        net, self.spec = load_kdsr(path)
        self.scale = self.spec.scale
        if self.spec.is_teacher:
            self.kind, self.device = 'teacher', device
            self.net = net.eval().to(device)
        else:
            self.kind = 'student'
            self.upscaler = KDSRUpscaler(path, device=device, half=False, bf16=False, tile=tile,
                                         loaded=(net, self.spec))

    @property
    def label(self):
        """The row label (teachers are marked as oracles)."""
        return f'{self.name} ({TEACHER_NOTE})' if self.kind == 'teacher' else self.name

    def info(self):
        return {
            'name': self.name,
            'label': self.label,
            'kind': self.kind,
            'path': self.path,
            'oracle_hr': self.kind == 'teacher',
            'arch': self.spec.options() if self.spec else None
        }

    @torch.inference_mode()
    def __call__(self, lr, gt, scale):
        """Super-resolve an 8-bit BGR LR image; ``gt`` (the HR) is used by teachers only."""
        if self.kind == 'bicubic':
            return bicubic_upsample(lr, scale)
        if self.kind == 'student':
            return self.upscaler.enhance(lr)[0]
        return _to_image(self.net(_to_tensor(lr, self.device), _to_tensor(gt, self.device)))


class Source:
    """A test set (one column, or one per degradation) as a list of images.

    Args:
        name (str): Column name.
        scale (int): SR scale of the data.
        tags (list[str | None]): Degradation tags (``[None]`` for paired folders).
        items (list[tuple]): ``(image stem, GT path, [(tag, LR path)])`` per image.
        origin (dict): Where the data came from (for the JSON output).
    """

    def __init__(self, name, scale, tags, items, origin):
        self.name, self.scale, self.tags, self.items, self.origin = name, scale, tags, items, origin
        self.crop = None

    def info(self):
        return {
            'name': self.name,
            'scale': self.scale,
            'crop': self.crop,
            'degradations': [t for t in self.tags if t],
            'n_images': len(self.items),
            **self.origin
        }


def _list_images(folder):
    return [f for f in sorted(os.listdir(folder)) if is_image_name(f)]


def read_set(folder):
    """A ``kdsr-testset`` folder -> :class:`Source` (OptionError naming what is missing)."""
    if not os.path.isdir(folder):
        raise MissingFileError(f'--set {folder}: no such folder.')
    proto_path = os.path.join(folder, 'protocol.json')
    if not os.path.isfile(proto_path):
        raise MissingFileError(f'--set {folder}: no protocol.json; give a folder written by kdsr-testset.')
    try:
        proto = json.loads(Path(proto_path).read_text())
        scale, tags = int(proto['scale']), list(proto['degradations'])
    except (ValueError, KeyError, TypeError) as err:
        raise OptionError(f'--set {proto_path}: not a kdsr-testset protocol file ({err}).') from None
    for sub in ['HR'] + tags:
        if not os.path.isdir(os.path.join(folder, sub)):
            raise MissingFileError(f'--set {folder}: folder {sub}/ listed in protocol.json is missing.')
    names = _list_images(os.path.join(folder, 'HR'))
    if not names:
        raise OptionError(f'--set {folder}: HR/ holds no images.')
    items = [(os.path.splitext(n)[0], os.path.join(folder, 'HR', n), [(t, os.path.join(folder, t, n)) for t in tags])
             for n in names]
    name = os.path.basename(os.path.normpath(os.path.abspath(folder)))
    return Source(name, scale, tags, items, {'set': folder, 'protocol': proto.get('protocol')})


def _scale_of_first_readable_pair(items):
    for _, gt_path, ((_, lr_path), ) in items:
        try:
            return max(1, read_image(gt_path).shape[0] // read_image(lr_path).shape[0])
        except ValueError:
            continue
    return None


def read_paired(lq_dir, gt_dir, scale=None):
    """Paired ``--lq`` / ``--gt`` folders -> :class:`Source`, files matched by stem.

    Args:
        lq_dir (str): Folder of LR images.
        gt_dir (str): Folder of HR images with the same stems.
        scale (int | None): SR scale; None: read from the first pair's heights.
    """
    for flag, folder in (('--lq', lq_dir), ('--gt', gt_dir)):
        if not os.path.isdir(folder):
            raise MissingFileError(f'{flag} {folder}: no such folder.')
    gts = defaultdict(list)
    for n in _list_images(gt_dir):
        gts[os.path.splitext(n)[0]].append(n)
    items = []
    for n in _list_images(lq_dir):
        stem = os.path.splitext(n)[0]
        lr_path = os.path.join(lq_dir, n)
        if len(gts[stem]) != 1:
            what = 'no GT' if not gts[stem] else f'{len(gts[stem])} GT files ({", ".join(gts[stem])})'
            raise OptionError(f'--lq {lr_path}: {what} of the same name in --gt {gt_dir}.')
        items.append((stem, os.path.join(gt_dir, gts[stem][0]), [(None, lr_path)]))
    if not items:
        raise OptionError(f'--lq {lq_dir}: no images ({", ".join(IMG_EXTS)}).')
    if scale is None:
        scale = _scale_of_first_readable_pair(items)
        if scale is None:
            raise OptionError(f'--lq {lq_dir}: no readable LR/GT pair to find the scale from.')
    lq_abs, gt_abs = os.path.abspath(lq_dir), os.path.abspath(gt_dir)
    parent = os.path.dirname(os.path.normpath(lq_abs))
    same_parent = parent == os.path.dirname(os.path.normpath(gt_abs)) and os.path.basename(parent)
    name = os.path.basename(parent) if same_parent else os.path.basename(os.path.normpath(lq_abs))
    return Source(name, scale, [None], items, {'lq': lq_dir, 'gt': gt_dir})


def fit_gt(gt, lr, scale):
    """The GT cropped to ``scale`` x the LR size (bottom/right), or ValueError if it does not fit."""
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if not (h <= gt.shape[0] < h + scale and w <= gt.shape[1] < w + scale):
        raise ValueError(f'a {lr.shape[1]}x{lr.shape[0]} LR at x{scale} needs a {w}x{h} GT, '
                         f'the GT is {gt.shape[1]}x{gt.shape[0]}')
    return gt[:h, :w]


def load_lpips(weights, device):
    """LPIPS (the ``lpips`` package, its own linear layers) with a backbone from a local torchvision file.

    Args:
        weights (str): torchvision ``alexnet`` or ``vgg16`` weights (e.g. ``alexnet-owt-7be5be79.pth``,
            ``vgg16-397923af.pth``); the backbone is chosen by the file.
        device (torch.device): Where LPIPS runs.

    Returns:
        tuple: ``(lpips.LPIPS module in eval mode, 'alex' | 'vgg')``.
    """
    if not os.path.isfile(weights):
        raise MissingFileError(f'--lpips-weights {weights}: file not found (torchvision alexnet or vgg16 weights).')
    try:
        import lpips
    except ImportError:
        raise OptionError("--lpips-weights: LPIPS needs the lpips package: pip install 'kdsr[lpips]'.") from None
    try:
        state = torch.load(weights, map_location='cpu', weights_only=True)
    except Exception as err:  # pickle, zip and weights_only errors all mean the same to a user
        reason = first_line(err)
        raise OptionError(f'--lpips-weights {weights}: not a loadable PyTorch weights file ({reason}).') from None
    first = state.get('features.0.weight') if isinstance(state, dict) else None
    net = LPIPS_NETS.get(first.shape[-1]) if torch.is_tensor(first) and first.ndim == 4 else None
    if net is None:
        raise OptionError(f'--lpips-weights {weights}: not torchvision AlexNet or VGG16 weights '
                          '(no features.0.weight with an 11x11 or 3x3 kernel).')
    with warnings.catch_warnings():  # torchvision's deprecation warning for lpips's pretrained=False backbone
        warnings.simplefilter('ignore')
        model = lpips.LPIPS(net=net[0], pretrained=True, pnet_rand=True, verbose=False)
    backbone = {}
    for key, value in model.net.state_dict().items():  # 'slice2.3.weight' <- torchvision 'features.3.weight'
        src = 'features.' + key.split('.', 1)[1]
        if src not in state or state[src].shape != value.shape:
            raise OptionError(f'--lpips-weights {weights}: {src} missing or of another shape; torchvision '
                              f'{net[1]} weights expected.')
        backbone[key] = state[src]
    model.net.load_state_dict(backbone, strict=True)
    return model.eval().to(device), net[0]


def image_metrics(sr, gt, crop, lpips_model=None):
    """PSNR and SSIM (BasicSR, Y channel, ``crop`` border pixels off) and optionally LPIPS.

    Args:
        sr (ndarray): H x W x 3 BGR uint8.
        gt (ndarray): H x W x 3 BGR uint8.
        crop (int): Border pixels left out of PSNR/SSIM.
        lpips_model (nn.Module | None): From :func:`load_lpips`.

    Returns:
        dict: ``{'psnr', 'ssim'}`` (+ ``'lpips'``) as floats.
    """
    out = {
        'psnr': float(calculate_psnr(sr, gt, crop, test_y_channel=True)),
        'ssim': float(calculate_ssim(sr, gt, crop, test_y_channel=True))
    }
    if lpips_model is not None:
        device = next(lpips_model.parameters()).device
        with torch.inference_mode():
            out['lpips'] = float(lpips_model(_to_tensor(sr, device) * 2 - 1, _to_tensor(gt, device) * 2 - 1).item())
    return out


def _unique(name, taken):
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f'{name}-{i}', i + 1
    taken.add(candidate)
    return candidate


def load_methods(models, bicubic=True, device='cpu', tile=0):
    """Bicubic (first, as in the paper) and one :class:`Method` per checkpoint; OptionError naming a bad file."""
    methods = [Method()] if bicubic else []
    for path in models:
        try:
            methods.append(Method(path, device, tile))
        except (FileNotFoundError, ValueError, KeyError) as err:
            raise OptionError(f'-m {err.args[0] if err.args else err}') from None
    taken = set()
    for m in methods:
        m.name = _unique(m.name, taken)
    return methods


def aggregate(rows, metric_keys, models, datasets):
    """Means per (model, dataset, degradation) and per (model, dataset) = the mean over its degradations.

    Args:
        rows (list[dict]): Per-image rows (``model``, ``dataset``, ``degradation``, ``image``, metrics).
        metric_keys (list[str]): The metrics to average.
        models (list[str]): Model names, in table order.
        datasets (list[tuple[str, list]]): ``(name, degradation tags)`` in table order (``[None]``: paired).

    Returns:
        list[dict]: ``{'model', 'dataset', 'degradation' (None: the dataset mean), 'column', 'n_images', metrics}``;
        groups without images are left out.
    """
    groups = defaultdict(list)
    for r in rows:
        groups[(r['model'], r['dataset'], r['degradation'])].append(r)
    out = []
    for model in models:
        for dataset, tags in datasets:
            parts = []
            for tag in tags:
                sel = groups.get((model, dataset, tag))
                if not sel:
                    continue
                means = {k: float(np.mean([r[k] for r in sel])) for k in metric_keys}
                parts.append((len(sel), means))
                if tag is not None:
                    out.append({
                        'model': model,
                        'dataset': dataset,
                        'degradation': tag,
                        'column': f'{dataset}/{tag}',
                        'n_images': len(sel),
                        **means
                    })
            if parts:
                out.append({
                    'model': model,
                    'dataset': dataset,
                    'degradation': None,
                    'column': dataset,
                    'n_images': sum(n for n, _ in parts),
                    **{
                        k: float(np.mean([m[k] for _, m in parts]))
                        for k in metric_keys
                    }
                })
    return out


def evaluate(
        models=(), sets=(), paired=(), bicubic=True, crop=None, device='auto', tile=0, lpips_weights=None,
        progress=True, on_skip=None):
    """Evaluate KDSR checkpoints (and bicubic) on test sets; the API behind ``kdsr-eval``.

    Args:
        models (list[str]): KDSR checkpoints (students and/or teachers; all of one scale).
        sets (list[str]): Folders written by ``kdsr-testset``.
        paired (list[tuple[str, str]]): ``(lq_dir, gt_dir)`` folder pairs.
        bicubic (bool): Add the MATLAB-bicubic row. Default: True.
        crop (int | None): Border crop of PSNR/SSIM; None: the scale of each data set.
        device (str | torch.device): 'auto', 'cpu', 'cuda' (or a torch.device).
        tile (int): LR tile size for students; 0: whole images (tiles only if memory is short).
        lpips_weights (str | None): torchvision AlexNet/VGG16 weights file: adds LPIPS.
        progress (bool): tqdm progress bar on stderr (when stderr is a terminal).
        on_skip (callable | None): Called as ``on_skip(path, reason)`` for each image skipped.

    Returns:
        dict: ``protocol``, ``models``, ``datasets``, ``images`` (one row per model and LR image),
        ``aggregates`` (see :func:`aggregate`) and ``failed`` (``{'path', 'reason'}`` of the
        images skipped, each also passed to ``on_skip``).

    Raises:
        OptionError: A bad or missing checkpoint, folder or weights file (nothing evaluated).
    """
    try:
        device = device if isinstance(device, torch.device) else pick_device(device)
    except ValueError as err:
        raise OptionError(str(err)) from None
    methods = load_methods(models, bicubic, device, tile)
    if not methods:
        raise OptionError('nothing to evaluate: give -m/--model or leave --bicubic on.')
    scales = sorted({m.scale for m in methods if m.scale})
    if len(scales) > 1:
        raise OptionError(f'-m: the models have different scales ({", ".join(f"x{s}" for s in scales)}); '
                          'evaluate them in separate runs.')
    sources = [read_set(d) for d in sets] + [read_paired(lq, gt, scales[0] if scales else None) for lq, gt in paired]
    if not sources:
        raise OptionError('no data: give --set DIR and/or --lq DIR --gt DIR.')
    taken = set()
    for src in sources:
        if scales and src.scale != scales[0]:
            raise OptionError(f'--set {src.origin["set"]}: a x{src.scale} test set, but the models are x{scales[0]}.')
        src.name = _unique(src.name, taken)
        src.crop = src.scale if crop is None else crop
    lpips_model, lpips_net = load_lpips(lpips_weights, device) if lpips_weights else (None, None)
    metric_keys = ['psnr', 'ssim'] + (['lpips'] if lpips_model is not None else [])

    rows, failed = [], []

    def skip(path, reason):
        if on_skip is not None:
            on_skip(path, reason)
        failed.append({'path': path, 'reason': reason})

    def read_or_skip(path):
        try:
            return read_image(path)
        except ValueError as err:
            skip(path, str(err))
            return None

    total = sum(len(lrs) for src in sources for _, _, lrs in src.items)
    with tqdm(total=total, desc='kdsr-eval', unit='img', disable=None if progress else True) as bar:
        for src in sources:
            for stem, gt_path, lrs in src.items:
                gt_full = read_or_skip(gt_path)
                if gt_full is None:
                    bar.update(len(lrs))
                    continue
                for tag, lr_path in lrs:
                    bar.update(1)
                    lr = read_or_skip(lr_path)
                    if lr is None:
                        continue
                    try:
                        gt = fit_gt(gt_full, lr, src.scale)
                    except ValueError as err:
                        skip(lr_path, f'{err} ({gt_path})')
                        continue
                    for m in methods:
                        rows.append({
                            'model': m.name,
                            'dataset': src.name,
                            'degradation': tag,
                            'image': stem,
                            **image_metrics(m(lr, gt, src.scale), gt, src.crop, lpips_model)
                        })
    return {
        'protocol': {
            'metrics': metric_keys,
            'y_channel': True,
            'bits': 8,
            'crop': crop,
            'bicubic': 'basicsr.utils.matlab_functions.imresize (MATLAB bicubic)',
            'lpips_net': lpips_net
        },
        'models': [m.info() for m in methods],
        'datasets': [src.info() for src in sources],
        'images': rows,
        'aggregates': aggregate(rows, metric_keys, [m.name for m in methods], [(s.name, s.tags) for s in sources]),
        'failed': failed,
    }


def _frac(value):
    """0.7281 -> '.7281' (the paper's SSIM/LPIPS style)."""
    text = f'{value:.4f}'
    return text.replace('0.', '.', 1) if abs(value) < 1 else text


def format_cell(agg, metric_keys):
    """``PSNR/SSIM`` (``LPIPS/PSNR/SSIM`` with LPIPS, as the paper's Table 3); '-' without images."""
    if agg is None:
        return '-'
    cell = f'{agg["psnr"]:.2f}/{_frac(agg["ssim"])}'
    return f'{_frac(agg["lpips"])}/{cell}' if 'lpips' in metric_keys else cell


def _table(title, columns, results, cells):
    """Markdown lines: a title, then a row per model (``cells``: {(model, column): aggregate})."""
    keys = results['protocol']['metrics']
    lines = [title, '', '| Method | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
    for m in results['models']:
        values = [format_cell(cells.get((m['name'], c)), keys) for c in columns]
        lines.append('| ' + ' | '.join([m['label']] + values) + ' |')
    return lines


def format_tables(results):
    """Markdown: one table with a column per data set, then one per set with several degradations."""
    keys = results['protocol']['metrics']
    what = 'LPIPS/PSNR (dB)/SSIM' if 'lpips' in keys else 'PSNR (dB)/SSIM'
    crop = results['protocol']['crop']
    crops = f'border crop {crop}' if crop is not None else 'border crop = scale'
    cells = {(a['model'], a['column']): a for a in results['aggregates']}
    datasets = results['datasets']
    lines = _table(
        f'{what} (PSNR and SSIM on Y, 8-bit, {crops}), mean over the images; for a test set, then '
        'over its degradations:', [d['name'] for d in datasets], results, cells)
    for d in datasets:
        if len(d['degradations']) > 1:
            lines += [''] + _table(f'{d["name"]} (x{d["scale"]}) per degradation:',
                                   [f'{d["name"]}/{t}' for t in d['degradations']], results, cells)
    if any(m['oracle_hr'] for m in results['models']):
        lines += ['', f'({TEACHER_NOTE}: a KDSR teacher whose encoder is given the HR image; not a blind result.)']
    return '\n'.join(lines)


def _write_output(path, write):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, write, mode='w')


CSV_FIELDS = ['kind', 'model', 'dataset', 'degradation', 'image', 'n_images', 'psnr', 'ssim', 'lpips']


def write_csv(results, path):
    """One row per model and image (``kind`` image), then the means (``kind`` mean; an empty degradation
    is the mean over the dataset's degradations)."""

    def write(f):
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction='ignore')
        writer.writeheader()
        for row in results['images']:
            writer.writerow({'kind': 'image', 'n_images': 1, **row})
        for row in results['aggregates']:
            writer.writerow({'kind': 'mean', **row})

    _write_output(path, write)


def write_json(results, path):
    _write_output(path, lambda f: json.dump(results, f, indent=1))


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='kdsr-eval',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 2)[2])
    many = dict(action='extend', nargs='+', default=[])  # repeat the flag or list several
    p.add_argument('-m', '--model', metavar='PATH', **many,
                   help='KDSR checkpoint(s), students and/or teachers (repeat the flag or list several)')
    p.add_argument('--bicubic', action=argparse.BooleanOptionalAction, default=True,
                   help='a MATLAB-bicubic row (default: on; --no-bicubic leaves it out)')
    p.add_argument('--set', metavar='DIR', **many, help='a test set written by kdsr-testset (repeatable)')
    p.add_argument('--lq', action='append', default=[], metavar='DIR', help='LR folder of a pair (with --gt)')
    p.add_argument('--gt', action='append', default=[], metavar='DIR', help='GT folder of a pair (with --lq)')
    p.add_argument('--crop', type=int, default=None, help='border pixels left out of PSNR/SSIM (default: the scale)')
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    p.add_argument('-t', '--tile', type=int, default=0, help='LR tile size for students (0: automatic)')
    p.add_argument('--lpips_weights', '--lpips-weights', default=None, metavar='PATH',
                   help='torchvision alexnet or vgg16 weights file: adds LPIPS (needs the lpips package)')
    p.add_argument('--csv', default=None, metavar='PATH', help='write per-image rows and means as CSV')
    p.add_argument('--json', default=None, metavar='PATH', help='write the full results as JSON')
    p.add_argument('--overwrite', action='store_true', help='replace an existing --csv / --json file')
    args = p.parse_args(argv)
    if len(args.lq) != len(args.gt):
        p.error(f'--lq and --gt come in pairs ({len(args.lq)} --lq, {len(args.gt)} --gt).')
    if args.crop is not None and args.crop < 0:
        p.error('--crop must be 0 or more.')
    if args.tile < 0:
        p.error(f'-t/--tile {args.tile}: must be 0 (automatic) or more')
    return args


def check_outputs(outputs, overwrite):
    """Before any evaluation: each ``(flag, path)`` output is new (or ``overwrite``) and writable."""
    for flag, path in outputs:
        if not path:
            continue
        if os.path.isdir(path):
            raise OptionError(f'{flag} {path} is a folder; name a file.')
        if os.path.exists(path) and not overwrite:
            raise OptionError(f'{flag} {path} exists; choose another name or add --overwrite.')
        ensure_writable_folder(os.path.dirname(os.path.abspath(path)), f'{flag} {path}')


@tool('kdsr-eval')
def main(argv=None):
    args = parse_args(argv)
    check_outputs((('--csv', args.csv), ('--json', args.json)), args.overwrite)
    results = evaluate(
        args.model,
        args.set,
        list(zip(args.lq, args.gt)),
        bicubic=args.bicubic,
        crop=args.crop,
        device=args.device,
        tile=args.tile,
        lpips_weights=args.lpips_weights,
        on_skip=lambda path, reason: tqdm.write(f'kdsr-eval: skipped {path}: {reason}', file=sys.stderr))
    print(format_tables(results))
    for flag, path, write in (('--csv', args.csv, write_csv), ('--json', args.json, write_json)):
        if path:
            try:
                write(results, path)
            except OSError as err:
                print(f'kdsr-eval: error: {flag} {path}: {err.strerror or err}', file=sys.stderr)
                return 2
    if results['failed']:
        print(
            f'kdsr-eval: {len(results["failed"])} file(s) skipped (see above); the means leave them out.',
            file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
