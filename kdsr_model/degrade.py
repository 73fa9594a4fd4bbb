"""``kdsr-degrade``: a fixed, seeded real-world LR/HR test set from a folder of HR images,
through the training synthesis (:class:`kdsr_model.data.realworld.RealWorldDegrader`):

    kdsr-degrade --hr HR_DIR --out OUT_DIR [--scale 4] [--seed 0] [--crops 1]

writes ``OUT_DIR/gt/*.png`` (400x400 HR crops) and ``OUT_DIR/lq/*.png`` (their degraded LR),
ready for BasicSR's ``PairedImageDataset``.
"""
import argparse
import os
import random
import sys
import tempfile

import cv2
import numpy as np
import torch
from .data.realworld import DEGRADATION_DEFAULTS, KERNEL_DEFAULTS, RealWorldDegrader  # noqa: F401 (public here too)
from .errors import OptionError, tool
from .io import check_input_output, is_image_name

def _write_png(path, tensor):
    img = (tensor.clamp(0, 1).permute(1, 2, 0).cpu().numpy()[:, :, ::-1] * 255.0).round().astype(np.uint8)
    cv2.imwrite(path, img)


def make_test_set(hr_dir, out_dir, scale=4, seed=0, crops=1, gt_size=400):
    """Write ``crops`` seeded degraded crops of every image of ``hr_dir``; returns the pair names."""
    from basicsr.data.realesrgan_dataset import RealESRGANDataset
    from tqdm import tqdm
    check_input_output(hr_dir, out_dir)
    names = [f for f in sorted(os.listdir(hr_dir)) if is_image_name(f)]
    unreadable = [n for n in names if cv2.imread(os.path.join(hr_dir, n), cv2.IMREAD_COLOR) is None]
    if unreadable:
        raise OptionError(f'{os.path.join(hr_dir, unreadable[0])}: not a readable image'
                          + (f' (and {len(unreadable) - 1} more)' if len(unreadable) > 1 else '')
                          + '; remove it from --hr.')
    if not names:
        raise OptionError(f'--hr {hr_dir}: no images.')
    for sub in ('gt', 'lq'):
        if os.path.exists(os.path.join(out_dir, sub)):
            raise OptionError(f'{os.path.join(out_dir, sub)} exists; choose another --out.')
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    with tempfile.NamedTemporaryFile('w', suffix='.txt', delete=False) as meta:
        meta.writelines(f'{n}\n' for n in names)
    dataset = RealESRGANDataset(
        dict(KERNEL_DEFAULTS, dataroot_gt=hr_dir, meta_info=meta.name, io_backend={'type': 'disk'}, use_hflip=False,
             use_rot=False, gt_size=gt_size))
    os.unlink(meta.name)
    degrader = RealWorldDegrader({'scale': scale, 'gt_size': gt_size})
    tmp_gt, tmp_lq = os.path.join(out_dir, 'gt.partial'), os.path.join(out_dir, 'lq.partial')
    os.makedirs(tmp_gt, exist_ok=True)
    os.makedirs(tmp_lq, exist_ok=True)
    written = []
    for i in tqdm(range(len(names) * crops), desc='degrading', unit='img'):
        sample = dataset[i % len(names)]
        batch = {k: (v.unsqueeze(0) if torch.is_tensor(v) else v) for k, v in sample.items()}
        lq, gt = degrader(batch)
        stem = os.path.splitext(names[i % len(names)])[0] + (f'_{i // len(names)}' if crops > 1 else '')
        _write_png(os.path.join(tmp_gt, stem + '.png'), gt[0])
        _write_png(os.path.join(tmp_lq, stem + '.png'), lq[0])
        written.append(stem + '.png')
    os.replace(tmp_gt, os.path.join(out_dir, 'gt'))
    os.replace(tmp_lq, os.path.join(out_dir, 'lq'))
    return written


@tool('kdsr-degrade')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='kdsr-degrade', description=__doc__.split('\n\n')[1].split(':')[0])
    parser.add_argument('--hr', required=True, help='folder of HR images')
    parser.add_argument('--out', required=True, help='output folder (gt/ and lq/ are created)')
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--crops', type=int, default=1, help='crops per image')
    parser.add_argument('--gt_size', '--gt-size', type=int, default=400, help='HR crop size (at most 400)')
    args = parser.parse_args(argv)
    for flag, value, low, high in (('--scale', args.scale, 1, 8), ('--crops', args.crops, 1, None),
                                   ('--gt_size', args.gt_size, args.scale, 400)):
        if value < low or (high is not None and value > high):
            parser.error(f'{flag} {value}: must be {low} or more' + (f' and at most {high}' if high else ''))
    if args.gt_size % args.scale:
        parser.error(f'--gt_size {args.gt_size}: must be a multiple of --scale {args.scale}')
    written = make_test_set(args.hr, args.out, args.scale, args.seed, args.crops, args.gt_size)
    print(f'kdsr-degrade: {len(written)} pairs in {args.out}/gt and {args.out}/lq')


if __name__ == '__main__':
    sys.exit(main())
