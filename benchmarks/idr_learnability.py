"""Can the teacher's encoder learn to read the degradation? A supervised check, no generator.

    python benchmarks/idr_learnability.py [--photos DIR] [--steps 300] [--lr 1e-4]

KD-IDE (48 features, 2 blocks, the default model's size) is trained alone, with a linear head
on D', to regress the blur sigma (0.2-4) and noise sigma (0-30) of classic x4 degradations of
96x96 HR crops, from three inputs:

- ``paper``: LR + pixel-unshuffled HR (the teacher's input in the paper);
- ``residual``: the same plus r = LR - bicubic downscale(HR), and r**2;
- ``residual_detail``: ``residual`` plus d**2 and r*d, d = hp(ref) the clean downscale's own
  detail (3x3 high-pass): blur takes detail away, so r correlates negatively with d, while noise
  does not; mean(r*d) / mean(d**2) is a blur estimate that noise leaves alone;
- ``lr_highpass``: no encoder, a fixed feature: the mean |LR - 3x3 box blur(LR)| (least squares).

It prints R^2 on held-out batches. The degradation is a second-order statistic of the pair
masked by the photo's content; the question is whether gradient descent finds it in the few
hundred steps a CPU session gives, which the shipped teacher's constant IDR suggests it does not.
"""
import argparse
import glob
import os
import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from kdsr_arch.kd_ide_arch import KD_IDE  # noqa: E402
from kdsr_model.data.classic import bicubic_matrix, classic_degrade, isotropic_gaussian_kernels  # noqa: E402

HR, SCALE = 96, 4


class Pairs:
    """Random HR crops of the photos with random (blur, noise), degraded to LR."""

    def __init__(self, folder, seed):
        paths = sorted(glob.glob(os.path.join(folder, '*')))
        self.photos = [cv2.imread(p, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255 for p in paths]
        self.rng = np.random.default_rng(seed)
        self.down = bicubic_matrix(HR, 1 / SCALE)

    def batch(self, n):
        crops = []
        for _ in range(n):
            p = self.photos[self.rng.integers(len(self.photos))]
            y, x = self.rng.integers(p.shape[0] - HR), self.rng.integers(p.shape[1] - HR)
            crops.append(torch.from_numpy(p[y:y + HR, x:x + HR].copy()).permute(2, 0, 1))
        hr = torch.stack(crops)
        sigma = torch.from_numpy(self.rng.uniform(0.2, 4.0, n)).float()
        noise = torch.from_numpy(self.rng.uniform(0, 30, n)).float()
        lr = classic_degrade(hr, isotropic_gaussian_kernels(sigma), noise, SCALE)
        return lr, hr, torch.stack([(sigma - 0.2) / 3.8, noise / 30], 1)

    def inputs(self, variant, lr, hr):
        x = torch.cat([lr, F.pixel_unshuffle(hr, SCALE)], 1)
        if variant.startswith('residual'):
            ref = self.down @ hr @ self.down.t()
            r = 10 * (lr - ref)
            x = torch.cat([x, r, r**2], 1)
            if variant == 'residual_detail':
                detail = 10 * (ref - F.avg_pool2d(F.pad(ref, (1, 1, 1, 1), mode='reflect'), 3, 1))
                x = torch.cat([x, detail**2, r * detail], 1)
        return x


def r2(pred, target):
    return (1 - ((pred - target)**2).sum(0) / ((target - target.mean(0))**2).sum(0)).tolist()


def train_encoder(pairs, val, variant, steps, lr_rate, report):
    torch.manual_seed(0)
    enc = KD_IDE(48, 2, pairs.inputs(variant, *val[0][:2]).shape[1])
    head = torch.nn.Linear(4 * 48, 2)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=lr_rate)
    rows = []
    for step in range(1, steps + 1):
        lr, hr, target = pairs.batch(16)
        loss = F.mse_loss(head(enc(pairs.inputs(variant, lr, hr))[1][0]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % report == 0:
            with torch.no_grad():
                pred = torch.cat([head(enc(pairs.inputs(variant, a, b))[1][0]) for a, b, _ in val])
            rows.append((step, *r2(pred, torch.cat([t for _, _, t in val]))))
    return rows


def highpass_baseline(val):
    feats = torch.cat([(a - F.avg_pool2d(F.pad(a, (1, 1, 1, 1), mode='reflect'), 3, 1)).abs().mean((1, 2, 3))
                       for a, _, _ in val])
    target = torch.cat([t for _, _, t in val])
    design = torch.stack([feats, torch.ones_like(feats)], 1)
    pred = design @ torch.linalg.lstsq(design, target).solution
    return r2(pred, target)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--photos', default=os.path.join('..', 'shared', 'data', 'photos', 'train'))
    parser.add_argument('--steps', type=int, default=300)
    parser.add_argument('--lr', type=float, default=1e-4)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--variants', nargs='+', default=['paper', 'residual', 'residual_detail'],
                        choices=['paper', 'residual', 'residual_detail'])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = Pairs(args.photos, seed=0)
    val = [pairs.batch(32) for _ in range(4)]
    print(f'# KD-IDE 48/2 alone, Adam {args.lr:g}, batch 16 of 96x96 HR crops, x4; R^2 on 128 held-out pairs\n')
    print('| input | step | R^2 blur sigma | R^2 noise sigma |\n|---|---|---|---|')
    for variant in args.variants:
        for step, blur, noise in train_encoder(pairs, val, variant, args.steps, args.lr, max(1, args.steps // 3)):
            print(f'| {variant} | {step} | {blur:.2f} | {noise:.2f} |', flush=True)
    blur, noise = highpass_baseline(val)
    print(f'| lr_highpass (fixed feature, least squares) | - | {blur:.2f} | {noise:.2f} |')


if __name__ == '__main__':
    main()
