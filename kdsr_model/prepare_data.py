"""``kdsr-prepare``: a folder of HR images -> sub-images, meta_info and (optionally) LMDB.

    kdsr-prepare --hr datasets/DF2K/HR --out datasets/DF2K_sub [--lmdb]

Writes ``OUT/sub/*.png`` (overlapping crops, as BasicSR's ``extract_subimages.py`` makes
them: ``crop_size`` 400, ``step`` 200, ``thresh_size`` 0), ``OUT/meta_info.txt`` (one file
name a line, what ``RealESRGANDataset``'s ``meta_info`` reads with ``dataroot_gt: OUT/sub``)
and with ``--lmdb`` ``OUT/sub.lmdb`` through BasicSR's ``lmdb_util.make_lmdb_from_imgs``
(use ``dataroot_gt: OUT/sub.lmdb`` with ``io_backend: {type: lmdb}``). A file that cannot be
read gets one line and is skipped; the command exits with status 1 if any was skipped.

``--scales 1,0.5,0.333`` also cuts each image downscaled by those factors (antialiased, as
Real-ESRGAN's multi-scale DF2K): a smaller scale packs the same scene into fewer pixels, so the
model meets denser fine texture. Their sub-images are named ``STEM_x0.5_s001.png``; one side is
``crop_size`` or the scaled image's shorter side if that is less (``RealESRGANDataset`` pads
such a sub-image to 400 by reflection), and a copy under 192 pixels (a 48x48 LR patch x4) is
left out.
"""
import argparse
import os
import shutil
import sys

import cv2
import numpy as np
from tqdm import tqdm

from .errors import OptionError, tool
from .io import IMG_EXTS, check_input_output, is_image_name


def crop_positions(length, crop_size, step, thresh_size):
    """Top-left offsets along one axis: every ``step``, plus a last crop at the border when the
    remainder exceeds ``thresh_size`` (BasicSR's rule)."""
    positions = list(range(0, length - crop_size + 1, step))
    if not positions:
        return []
    if length - (positions[-1] + crop_size) > thresh_size:
        positions.append(length - crop_size)
    return positions


def extract_subimages(img, crop_size=400, step=200, thresh_size=0):
    """Yield the crops of one image (H x W x C array) in row-major order."""
    h, w = img.shape[:2]
    for y in crop_positions(h, crop_size, step, thresh_size):
        for x in crop_positions(w, crop_size, step, thresh_size):
            yield np.ascontiguousarray(img[y:y + crop_size, x:x + crop_size])


def scaled_copies(img, scales):
    """Yield ``(scale, image)``: ``img`` itself for scale 1, else downscaled (``cv2.INTER_AREA``,
    antialiased) by each factor of ``scales``."""
    h, w = img.shape[:2]
    for s in scales:
        if s == 1:
            yield s, img
        else:
            yield s, cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def prepare(hr_dir, out_dir, crop_size=400, step=200, thresh_size=0, make_lmdb=False, compress_level=3,
            on_skip=None, scales=(1, ), min_size=192):
    """Run the whole preparation; returns ``(written sub-image names, failures [(file, reason)])``.

    ``scales``: also cut each image downscaled by these factors (in (0, 1]); a scaled copy's
    sub-images are ``min(crop_size, shorter side)`` square, and a copy whose shorter side is below
    ``min_size`` is left out. ``on_skip(path, reason)``, if given, is called for each input skipped."""
    if not scales or any(not 0 < s <= 1 for s in scales) or len(set(scales)) < len(scales):
        raise OptionError(f'--scales {",".join(f"{s:g}" for s in scales)}: each must be in (0, 1], each once.')
    check_input_output(hr_dir, out_dir)
    sub_dir = os.path.join(out_dir, 'sub')
    for existing in (sub_dir, os.path.join(out_dir, 'meta_info.txt'), os.path.join(out_dir, 'sub.lmdb')):
        if os.path.exists(existing):
            raise OptionError(f'{existing} exists; choose another --out (nothing is overwritten).')
    files = [f for f in sorted(os.listdir(hr_dir)) if is_image_name(f)]
    if not files:
        raise OptionError(f'--hr {hr_dir}: no images ({", ".join(IMG_EXTS)}).')
    partial = sub_dir + '.partial'
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)  # creates --out too, once the inputs are known to be usable
    names, failures = [], []
    for name in tqdm(files, desc='sub-images', unit='img'):
        img = cv2.imread(os.path.join(hr_dir, name), cv2.IMREAD_UNCHANGED)
        if img is None:
            reason = 'not a readable image'
        elif min(img.shape[:2]) < crop_size:
            reason = f'{img.shape[1]}x{img.shape[0]} is smaller than --crop_size {crop_size}'
        else:
            reason = None
        if reason is not None:
            failures.append((name, reason))
            if on_skip is not None:
                on_skip(os.path.join(hr_dir, name), reason)
            continue
        stem = os.path.splitext(name)[0]
        for scale, scaled in scaled_copies(img, scales):
            size = min(crop_size, *scaled.shape[:2])
            if size < min(crop_size, min_size):
                continue
            prefix = stem if scale == 1 else f'{stem}_x{scale:g}'
            for idx, crop in enumerate(extract_subimages(scaled, size, step, thresh_size), start=1):
                sub_name = f'{prefix}_s{idx:03d}.png'
                cv2.imwrite(os.path.join(partial, sub_name), crop, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
                names.append(sub_name)
    os.replace(partial, sub_dir)  # complete sub-images appear at once, never half a folder
    with open(os.path.join(out_dir, 'meta_info.txt'), 'w') as f:
        f.writelines(f'{n}\n' for n in names)
    if make_lmdb:
        from basicsr.utils.lmdb_util import make_lmdb_from_imgs
        lmdb_partial = os.path.join(out_dir, 'sub.partial.lmdb')
        shutil.rmtree(lmdb_partial, ignore_errors=True)
        make_lmdb_from_imgs(
            sub_dir, lmdb_partial, names, [os.path.splitext(n)[0] for n in names], compress_level=compress_level)
        os.replace(lmdb_partial, os.path.join(out_dir, 'sub.lmdb'))
    return names, failures


@tool('kdsr-prepare')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='kdsr-prepare', description=__doc__.split('\n\n')[0])
    parser.add_argument('--hr', required=True, help='folder of HR images')
    parser.add_argument('--out', required=True, help='output folder (sub/, meta_info.txt, sub.lmdb/)')
    parser.add_argument('--crop_size', '--crop-size', type=int, default=400, help='sub-image side (default 400)')
    parser.add_argument('--step', type=int, default=200, help='distance between sub-images (default 200)')
    parser.add_argument('--thresh_size', '--thresh-size', type=int, default=0,
                        help='keep a last, shifted sub-image when this many pixels are left over (default 0)')
    parser.add_argument('--lmdb', action='store_true', help='also write an LMDB of the sub-images')
    parser.add_argument('--scales', default='1', metavar='S,S,...',
                        help='cut each image at these scales in (0, 1], e.g. 1,0.5,0.333 for the images as they '
                        'are and downscaled by 2 and 3 (denser texture; default 1)')
    args = parser.parse_args(argv)
    try:
        scales = [float(v) for v in args.scales.split(',')]
    except ValueError:
        parser.error(f'--scales {args.scales}: expected numbers separated by commas, e.g. 1,0.5,0.333')
    for flag, value, low in (('--crop_size', args.crop_size, 1), ('--step', args.step, 1),
                             ('--thresh_size', args.thresh_size, 0)):
        if value < low:
            parser.error(f'{flag} {value}: must be {low} or more')
    names, failures = prepare(
        args.hr, args.out, args.crop_size, args.step, args.thresh_size, args.lmdb, scales=scales,
        on_skip=lambda path, reason: tqdm.write(f'kdsr-prepare: skipped {path}: {reason}', file=sys.stderr))
    print(f'kdsr-prepare: {len(names)} sub-images in {os.path.join(args.out, "sub")}, meta_info '
          f'{os.path.join(args.out, "meta_info.txt")}' + (', LMDB sub.lmdb' if args.lmdb else '') +
          (f'; {len(failures)} file(s) skipped' if failures else ''))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
