"""x4 models against bicubic on held-out photos in three degradation bands (clean, mild, heavy).

    python benchmarks/bands.py [--model PATH ...] [--teacher PATH ...] [--peer NAME=PATH ...]
                               [--photos DIR ...] [--niqe] [--figure PNG]

Each photo's centre 384x384 crop is degraded to 96x96 in every band of
:mod:`kdsr_model.data.bands` (frozen, seeded per photo), upscaled x4 by each method, and
scored with BasicSR's PSNR-Y and SSIM-Y (4-pixel border) against the HR crop. "bicubic" is
``cv2.resize(..., INTER_CUBIC)`` of the LR. Without ``--model`` the built-in model runs.
``--teacher`` scores a teacher checkpoint, which also sees the HR (an oracle IDR; for sanity
runs). ``--peer`` scores other x4 models through spandrel (e.g. Real-ESRGAN's releases).
``--niqe`` adds BasicSR's NIQE on the whole upscaled photos (lower is better). ``--figure``
writes a bicubic | model | HR side-by-side of one crop per band.

Default photos: ``../shared/data/photos/val`` (if present) and ``benchmarks/photos``.
"""
import argparse
import os
import sys

import cv2
import numpy as np
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim

from kdsr_arch.checkpoint import load_kdsr
from kdsr_model.data.bands import BANDS, SCALE, centre_crop, degrade_band
from kdsr_model.upscaler import KDSRUpscaler, edge_padded

HERE = os.path.dirname(os.path.abspath(__file__))
CROP = 384
EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def to_tensor(img):
    return torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1])).permute(2, 0, 1)[None].float() / 255


def to_image(t):
    return (t[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)


def bicubic(lr, hr):
    return cv2.resize(lr, (lr.shape[1] * SCALE, lr.shape[0] * SCALE), interpolation=cv2.INTER_CUBIC)


def student_method(path, param_key='auto', color_fix=True):
    loaded = load_kdsr(path, param_key) if path else None
    up = KDSRUpscaler(path, device='cpu', bf16=False, loaded=loaded, color_fix=color_fix)
    return lambda lr, hr: up.enhance(lr)[0]


def teacher_method(path, param_key='auto'):
    net, spec = load_kdsr(path, param_key)
    if not spec.is_teacher:
        raise SystemExit(f'bands.py: error: --teacher {path}: not a teacher checkpoint (use --model).')
    net.eval()

    def run(lr, hr):  # as kdsr-eval runs teachers: the IDR from (LR, HR), the generator edge-padded
        with torch.no_grad():
            lq = to_tensor(lr)
            idr = net.encode(lq, to_tensor(hr))[0]
            return to_image(edge_padded(lambda x: net.upsample(x, idr), lq, SCALE))

    return run


def peer_method(path):
    import spandrel
    model = spandrel.ModelLoader().load_from_file(path).eval()
    if model.scale != SCALE:
        raise SystemExit(f'bands.py: error: --peer {path}: a x{model.scale} model, not x{SCALE}.')

    def run(lr, hr):
        with torch.no_grad():
            return to_image(model(to_tensor(lr)))

    return run


def list_photos(folders):
    paths = []
    for folder in folders:
        if not os.path.isdir(folder):
            raise SystemExit(f'bands.py: error: --photos {folder}: not a folder.')
        paths += [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.lower().endswith(EXTS)]
    if not paths:
        raise SystemExit('bands.py: error: no photos found.')
    return paths


def score(methods, photos, niqe=False):
    """rows[band][method] = list of (photo, psnr, ssim[, niqe])."""
    from basicsr.metrics.niqe import calculate_niqe
    rows = {band: {name: [] for name in methods} for band in BANDS}
    crops = {}
    for path in photos:
        name = os.path.basename(path)
        full = cv2.imread(path, cv2.IMREAD_COLOR)
        full = full[:full.shape[0] // SCALE * SCALE, :full.shape[1] // SCALE * SCALE]
        hr = centre_crop(full, CROP)
        for band in BANDS:
            lr = degrade_band(hr, band, name)
            lr_full = degrade_band(full, band, name) if niqe else None
            for method, run in methods.items():
                sr = run(lr, hr)
                row = [name, calculate_psnr(sr, hr, 4, test_y_channel=True),
                       calculate_ssim(sr, hr, 4, test_y_channel=True)]
                if niqe:
                    row.append(calculate_niqe(run(lr_full, full), 4, input_order='HWC', convert_to='y'))
                rows[band][method].append(row)
                crops.setdefault((band, name), {})[method] = sr
            crops[(band, name)]['HR'] = hr
        print(f'  {name}', file=sys.stderr, flush=True)
    return rows, crops


def report(rows, niqe=False):
    methods = list(next(iter(rows.values())))
    lines = [f'| band | method | PSNR-Y | gain vs bicubic | worst photo gain | SSIM-Y |{" NIQE |" if niqe else ""}',
             f'|---|---|---|---|---|---|{"---|" if niqe else ""}']
    for band in BANDS:
        base = np.array([r[1] for r in rows[band]['bicubic']])
        for method in methods:
            r = rows[band][method]
            psnr = np.array([x[1] for x in r])
            gains = psnr - base
            worst = int(np.argmin(gains))
            cells = [band, method, f'{psnr.mean():.2f}',
                     '' if method == 'bicubic' else f'{gains.mean():+.3f}',
                     '' if method == 'bicubic' else f'{gains[worst]:+.3f} ({r[worst][0]})',
                     f'{np.mean([x[2] for x in r]):.4f}']
            if niqe:
                cells.append(f'{np.mean([x[3] for x in r]):.2f}')
            lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def figure(crops, method, path, photo=None, size=96):
    """A (bicubic | method | HR) row per band, each a ``size`` crop of the upscaled 384 crop at 2x zoom."""
    names = sorted({name for _, name in crops})
    photo = photo or names[0]
    rows = []
    for band in BANDS:
        c = crops[(band, photo)]
        tiles = []
        for key in ('bicubic', method, 'HR'):
            img = c[key][CROP // 2 - size // 2:CROP // 2 + size // 2, CROP // 2 - size // 2:CROP // 2 + size // 2]
            img = cv2.resize(img, (size * 2, size * 2), interpolation=cv2.INTER_NEAREST)
            tiles += [img, np.full((size * 2, 4, 3), 255, np.uint8)]
        rows += [np.hstack(tiles[:-1]), np.full((4, size * 6 + 8, 3), 255, np.uint8)]
    ok = cv2.imwrite(path, np.vstack(rows[:-1]))
    if not ok:
        raise SystemExit(f'bands.py: error: --figure {path}: could not write it.')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', action='append', default=[], help='KDSR student checkpoint (repeatable)')
    parser.add_argument('--teacher', action='append', default=[], help='KDSR teacher checkpoint (sees the HR)')
    parser.add_argument('--peer', action='append', default=[], metavar='NAME=PATH', help='spandrel-loadable x4 model')
    parser.add_argument('--photos', action='append', default=None, help='folder of HR photos (repeatable)')
    parser.add_argument('--niqe', action='store_true', help='NIQE on the whole upscaled photos (slow)')
    parser.add_argument('--figure', default=None, help='side-by-side PNG of the first KDSR method')
    parser.add_argument('--figure_photo', default=None, help='file name of the photo for --figure')
    parser.add_argument('--param_key', default='auto', help="weights in the checkpoints: auto (params_ema, else "
                        "params), params or params_ema")
    parser.add_argument('--no_color_fix', action='store_true',
                        help="students without the upscaler's colour fix (the figures before v18)")
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    if args.photos is None:
        shared_val = os.path.join(HERE, '..', '..', 'shared', 'data', 'photos', 'val')
        args.photos = [p for p in (shared_val, os.path.join(HERE, 'photos')) if os.path.isdir(p)]
    methods = {'bicubic': bicubic}
    for path in args.model or ([] if args.teacher else [None]):
        name = os.path.basename(path) if path else 'KDSR (built-in)'
        methods[name] = student_method(path, args.param_key, not args.no_color_fix)
    for path in args.teacher:
        methods[os.path.basename(path) + ' (teacher, sees HR)'] = teacher_method(path, args.param_key)
    for spec in args.peer:
        name, _, path = spec.partition('=')
        methods[name] = peer_method(path)
    photos = list_photos(args.photos)
    rows, crops = score(methods, photos, args.niqe)
    print(f'# {len(photos)} photos: centre {CROP}x{CROP} crops, x{SCALE} from {CROP // SCALE}x{CROP // SCALE} LR; '
          'PSNR-Y / SSIM-Y with a 4-pixel border' + ('; NIQE on whole photos' if args.niqe else '') + '\n')
    print(report(rows, args.niqe))
    if args.figure:
        figure(crops, list(methods)[1], args.figure, args.figure_photo)
        print(f'\nfigure: {args.figure}')


if __name__ == '__main__':
    main()
