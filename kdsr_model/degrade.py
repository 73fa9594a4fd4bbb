"""Real-world (Real-ESRGAN second-order) degradation, for training batches and for test sets.

:class:`RealWorldDegrader` runs BasicSR's own synthesis (``RealESRNetModel.feed_data``:
blur, resize, Gaussian/Poisson noise, DiffJPEG, second blur/resize/noise, final sinc + JPEG,
8-bit rounding, paired crop) on any device. The training models call it on every batch;
``kdsr-degrade`` uses it to write a fixed, seeded LR/HR test set from a folder of HR images:

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
from basicsr.models.realesrnet_model import RealESRNetModel
from basicsr.utils import DiffJPEG, USMSharp

from .errors import MissingFileError, OptionError, tool
from .io import is_image_name

# The authors' degradation settings (KDSR-GAN options, identical to Real-ESRGAN's).
DEGRADATION_DEFAULTS = dict(
    gt_usm=False, resize_prob=[0.2, 0.7, 0.1], resize_range=[0.15, 1.5], gaussian_noise_prob=0.5,
    noise_range=[1, 30], poisson_scale_range=[0.05, 3], gray_noise_prob=0.4, jpeg_range=[30, 95],
    second_blur_prob=0.8, resize_prob2=[0.3, 0.4, 0.3], resize_range2=[0.3, 1.2], gaussian_noise_prob2=0.5,
    noise_range2=[1, 25], poisson_scale_range2=[0.05, 2.5], gray_noise_prob2=0.4, jpeg_range2=[30, 95])
KERNEL_DEFAULTS = dict(
    blur_kernel_size=21, kernel_list=['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso',
                                      'plateau_aniso'], kernel_prob=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    sinc_prob=0.1, blur_sigma=[0.2, 3], betag_range=[0.5, 4], betap_range=[1, 2], blur_kernel_size2=21,
    kernel_list2=['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso'],
    kernel_prob2=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03], sinc_prob2=0.1, blur_sigma2=[0.2, 1.5],
    betag_range2=[0.5, 4], betap_range2=[1, 2], final_sinc_prob=0.8)  # yapf: disable


class ContiguousDiffJPEG(DiffJPEG):
    """BasicSR's DiffJPEG with a contiguous output: its output can be non-contiguous on current
    torch, and BasicSR's ``filter2D`` (the second blur) calls ``.view`` on it."""

    def forward(self, x, quality):
        return super().forward(x, quality).contiguous()


class RealWorldDegrader:
    """``degrader(batch) -> (lq, gt)``: a ``RealESRGANDataset`` batch (gt + kernels) -> LQ and
    the matching GT crop of ``gt_size``, on ``device``. Random choices come from Python's
    ``random``, NumPy and torch, as in BasicSR (seed them for a reproducible result).

    Args:
        opt (dict): ``scale``, ``gt_size`` and the degradation keys (defaults: the authors').
        device: Where the synthesis runs.
    """

    def __init__(self, opt, device='cpu'):
        self.opt = {**DEGRADATION_DEFAULTS, **opt}
        self.device = torch.device(device)
        self.is_train = True
        self.jpeger = ContiguousDiffJPEG(differentiable=False).to(self.device)
        self.usm_sharpener = USMSharp().to(self.device)

    def _dequeue_and_enqueue(self):
        """No pool here: the training models keep their own."""

    def __call__(self, batch):
        RealESRNetModel.feed_data(self, batch)
        return self.lq, self.gt


def _write_png(path, tensor):
    img = (tensor.clamp(0, 1).permute(1, 2, 0).cpu().numpy()[:, :, ::-1] * 255.0).round().astype(np.uint8)
    cv2.imwrite(path, img)


def make_test_set(hr_dir, out_dir, scale=4, seed=0, crops=1, gt_size=400):
    """Write ``crops`` seeded degraded crops of every image of ``hr_dir``; returns the pair names."""
    from basicsr.data.realesrgan_dataset import RealESRGANDataset
    from tqdm import tqdm
    if not os.path.isdir(hr_dir):
        raise MissingFileError(f'--hr {hr_dir}: not a folder.')
    if os.path.realpath(out_dir) == os.path.realpath(hr_dir):
        raise OptionError(f'--out {out_dir} is the --hr folder; nothing is written into an input folder. '
                          'Choose another --out.')
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
    return 0


if __name__ == '__main__':
    sys.exit(main())
