"""``kdsr-testset``: deterministic classic-degradation test sets from a folder of HR images.

    kdsr-testset --hr HR_DIR --out OUT_DIR --protocol gaussian8|aniso_noise|bands --scale 4 [--crop 384]

Writes ``OUT_DIR/HR/<name>.png`` (HR cropped to a multiple of the scale) and one folder of LR
PNGs per degradation, ``OUT_DIR/<tag>/<name>.png``, plus ``protocol.json`` listing them.

* ``gaussian8``: isotropic kernels, no noise. x4: sigma 1.8, 2.0, ..., 3.2 and x2: 0.9, ..., 1.6
  (the authors' code); x3: 1.35, 1.50, ..., 2.40 (IKC's convention; the authors have none).
* ``aniso_noise``: anisotropic kernels x noise 0, 10, 20: the authors' two test kernels
  (lambda1, lambda2, theta) = (4.0, 1.5, 120 deg) and (3.5, 1.5, 30 deg), then our own 9-kernel
  set ``k1``..``k9`` (lambda1 2.0/3.0/4.0 x theta 0/60/120 deg, lambda2 = lambda1 / 2), since
  the paper's Table 2 kernels are only pictured.
* ``bands``: x4 only, the frozen evaluation bands ``clean``, ``mild`` and ``heavy`` of
  :mod:`kdsr_model.data.bands` (blur, noise and JPEG drawn per image name).

``--crop N`` keeps the centre N x N of each HR image (the bands' benchmark uses 384).

Computed in float64 on the CPU with a noise seed derived from the image name and the
degradation, so the same input gives the same LR bytes on every run.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile

import cv2
import numpy as np
import torch

from .data.classic import anisotropic_gaussian_kernels, classic_degrade, isotropic_gaussian_kernels
from .data.bands import BANDS
from .data.bands import SCALE as BAND_SCALE
from .data.bands import centre_crop, degrade_band
from .errors import EXIT_SOME_FAILED, OptionError, tool
from .io import check_input_output, is_image_name

GAUSSIAN8_SIGMAS = {
    2: [0.9 + 0.1 * i for i in range(8)],
    3: [1.35 + 0.15 * i for i in range(8)],
    4: [1.8 + 0.2 * i for i in range(8)],
}
AUTHORS_ANISO = [(4.0, 1.5, 120.0), (3.5, 1.5, 30.0)]
OUR_ANISO = [(l1, l1 / 2, th) for l1 in (2.0, 3.0, 4.0) for th in (0.0, 60.0, 120.0)]
NOISE_LEVELS = (0, 10, 20)


def degradations(protocol, scale):
    """[(tag, description dict)] of a protocol at a scale."""
    if protocol == 'bands':
        if scale != BAND_SCALE:
            raise OptionError(f'--scale {scale}: the bands are defined for x{BAND_SCALE}.')
        return [(band, {'type': 'band', 'band': band}) for band in BANDS]
    if protocol == 'gaussian8':
        if scale not in GAUSSIAN8_SIGMAS:
            raise OptionError(f'--scale {scale}: gaussian8 is defined for x2, x3 and x4.')
        return [(f'sig{s:.2f}', {'type': 'iso', 'sigma': round(s, 4), 'noise': 0})
                for s in GAUSSIAN8_SIGMAS[scale]]
    kernels = [(f'authors{i + 1}', k) for i, k in enumerate(AUTHORS_ANISO)]
    kernels += [(f'k{i + 1}', k) for i, k in enumerate(OUR_ANISO)]
    return [(f'{name}_n{n}', {'type': 'aniso', 'lambda1': l1, 'lambda2': l2, 'theta_deg': th, 'noise': n})
            for name, (l1, l2, th) in kernels for n in NOISE_LEVELS]


def kernel_of(desc):
    if desc['type'] == 'iso':
        return isotropic_gaussian_kernels(torch.tensor([desc['sigma']], dtype=torch.float64))
    return anisotropic_gaussian_kernels(*(torch.tensor([v], dtype=torch.float64)
                                          for v in (desc['lambda1'], desc['lambda2'],
                                                    math.radians(desc['theta_deg']))))


def _seed(name, tag):
    return int.from_bytes(hashlib.sha256(f'{name}/{tag}'.encode()).digest()[:8], 'little')


def _check_folders(hr_dir, out_dir):
    check_input_output(hr_dir, out_dir)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise OptionError(f'--out {out_dir} exists and is not an empty folder; choose a new --out '
                          '(a test set is written whole or not at all).')


def make_testset(hr_dir, out_dir, protocol, scale, crop=None, on_skip=None):
    """Write the test set into ``out_dir`` (new or empty), whole: it is built in a temporary
    folder beside it and renamed when complete. Unreadable images are left out, each reported
    to ``on_skip(path, reason)``. Returns ``(degradations, skipped paths)``."""
    _check_folders(hr_dir, out_dir)
    names = [f for f in sorted(os.listdir(hr_dir)) if is_image_name(f)]
    if not names:
        raise OptionError(f'--hr {hr_dir}: no images.')
    degs = degradations(protocol, scale)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f'.{os.path.basename(os.path.abspath(out_dir))}.partial-', dir=parent)
    try:
        for sub in ['HR'] + [tag for tag, _ in degs]:
            os.makedirs(os.path.join(work, sub))
        from tqdm import tqdm
        used, skipped = [], []
        for name in tqdm(names, desc=f'{protocol} x{scale}', unit='img'):
            img = cv2.imread(os.path.join(hr_dir, name), cv2.IMREAD_COLOR)
            if img is None or min(img.shape[:2]) < scale:
                skipped.append(os.path.join(hr_dir, name))
                if on_skip:
                    on_skip(skipped[-1], 'not a readable image' if img is None else f'smaller than the scale {scale}')
                continue
            _write_image(work, name, img, degs, scale, crop)
            used.append(name)
        if not used:
            raise OptionError(f'--hr {hr_dir}: no readable images.')
        with open(os.path.join(work, 'protocol.json'), 'w') as f:
            json.dump({'protocol': protocol, 'scale': scale, 'crop': crop, 'images': used,
                       'degradations': {tag: desc for tag, desc in degs}}, f, indent=1)
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above)
        os.replace(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return degs, skipped


def _write_image(out_dir, name, img, degs, scale, crop):
    if crop:
        img = centre_crop(img, crop)
    h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
    img = np.ascontiguousarray(img[:h, :w])
    stem = os.path.splitext(name)[0] + '.png'
    cv2.imwrite(os.path.join(out_dir, 'HR', stem), img)
    hr = torch.from_numpy(img[:, :, ::-1].astype(np.float64) / 255).permute(2, 0, 1)[None]
    for tag, desc in degs:
        if desc['type'] == 'band':
            cv2.imwrite(os.path.join(out_dir, tag, stem), degrade_band(img, tag, stem))
            continue
        torch.manual_seed(_seed(stem, tag))
        lr = classic_degrade(hr, kernel_of(desc), torch.tensor([float(desc['noise'])], dtype=torch.float64), scale)
        lr = (lr[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)
        cv2.imwrite(os.path.join(out_dir, tag, stem), lr)


@tool('kdsr-testset')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='kdsr-testset', description=__doc__.split('\n\n')[0])
    parser.add_argument('--hr', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--protocol', required=True, choices=['gaussian8', 'aniso_noise', 'bands'])
    parser.add_argument('--scale', type=int, default=4, choices=[2, 3, 4])
    parser.add_argument('--crop', type=int, default=None, help='keep the centre CROP x CROP of each HR image')
    args = parser.parse_args(argv)
    if args.crop is not None and args.crop < args.scale:
        parser.error(f'--crop {args.crop}: must be at least the scale ({args.scale})')
    degs, skipped = make_testset(args.hr, args.out, args.protocol, args.scale, args.crop,
                                 on_skip=lambda path, reason: print(f'kdsr-testset: skipped {path}: {reason}',
                                                                    file=sys.stderr))
    print(f'kdsr-testset: {len(degs)} degradations in {args.out} (see protocol.json)'
          + (f'; {len(skipped)} unreadable image(s) left out' if skipped else ''))
    return EXIT_SOME_FAILED if skipped else 0


if __name__ == '__main__':
    sys.exit(main())
