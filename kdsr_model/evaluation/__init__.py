"""Evaluation library behind ``kdsr-eval``: :func:`evaluate` scores KDSR checkpoints and bicubic
on test sets as the paper's tables do (protocol: :mod:`kdsr_model.evaluate`, the tool's help).

    sources.py   test sets and paired folders -> Source (GT and LR paths per degradation)
    methods.py   Method rows: bicubic, students (KDSRUpscaler), teachers (HR oracles)
    metrics.py   PSNR / SSIM on Y, LPIPS from a local backbone file
    report.py    Markdown tables, CSV, JSON
"""
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from ..errors import OptionError
from ..upscaler import device_option
from .methods import TEACHER_NOTE, Method, bicubic_upsample, load_methods, unique_name
from .metrics import LPIPS_NETS, image_metrics, load_lpips
from .report import CSV_FIELDS, format_cell, format_tables, write_csv, write_json
from .sources import Source, fit_gt, read_image, read_paired, read_set

__all__ = [
    'evaluate', 'aggregate', 'Method', 'Source', 'load_methods', 'read_set', 'read_paired', 'read_image', 'fit_gt',
    'bicubic_upsample', 'image_metrics', 'load_lpips', 'format_tables', 'format_cell', 'write_csv', 'write_json',
    'TEACHER_NOTE', 'LPIPS_NETS', 'CSV_FIELDS'
]


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
    device = device_option(device)
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
        src.name = unique_name(src.name, taken)
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
