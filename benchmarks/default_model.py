"""The built-in model against bicubic on real-world-degraded val photos, and CPU speed.

    python benchmarks/default_model.py [--photos ../shared/data/photos] [--model PATH]

Degrades ``PHOTOS/val`` with the seeded real-world pipeline (``kdsr-degrade``, seed 0, two
400x400 crops per image by default), then prints PSNR-Y (BasicSR's calculate_psnr, crop 4) of the model
and of bicubic upsampling against the HR crops, and seconds per output megapixel on this CPU
for the built-in model and for a KDSR-GAN-size student (random weights: speed only).
"""
import argparse
import os
import statistics
import tempfile
import time

import cv2
import numpy as np
import torch
from basicsr.metrics import calculate_psnr

from kdsr_arch import build_preset
from kdsr_model.degrade import make_test_set
from kdsr_model.upscaler import KDSRUpscaler


def seconds_per_megapixel(up, img, repeats=3):
    up.enhance(img)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out, _ = up.enhance(img)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / (out.shape[0] * out.shape[1] / 1e6)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--photos', default=os.path.join('..', 'shared', 'data', 'photos'))
    parser.add_argument('--model', default=None)
    parser.add_argument('--crops', type=int, default=2, help='seeded 400x400 crops per val image (the recipe: 2)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-speed', action='store_true', help='PSNR only')
    parser.add_argument('--bf16', action='store_true',
                        help='also run bf16 autocast (KDSRUpscaler(bf16=True)): PSNR-Y and its 8-bit distance to fp32')
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    up = KDSRUpscaler(args.model, device='cpu', bf16=False)
    up_bf16 = KDSRUpscaler(args.model, device='cpu', bf16=True) if args.bf16 else None
    with tempfile.TemporaryDirectory() as tmp:
        names = make_test_set(os.path.join(args.photos, 'val'), tmp, scale=4, seed=args.seed, crops=args.crops)
        rows = []
        for name in names:
            gt = cv2.imread(os.path.join(tmp, 'gt', name))
            lq = cv2.imread(os.path.join(tmp, 'lq', name))
            sr, _ = up.enhance(lq)
            bic = cv2.resize(lq, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_CUBIC)
            rows.append((name, calculate_psnr(sr, gt, 4, test_y_channel=True),
                         calculate_psnr(bic, gt, 4, test_y_channel=True)))
            if up_bf16 is not None:
                sr_bf16, _ = up_bf16.enhance(lq)
                diff = np.abs(sr_bf16.astype(np.int16) - sr.astype(np.int16))
                rows[-1] += (calculate_psnr(sr_bf16, gt, 4, test_y_channel=True), int(diff.max()),
                             100 * float((diff > 1).mean()), calculate_psnr(sr_bf16, sr, 0))
    n_params = sum(p.numel() for p in up.net.parameters())
    print(f'# model {args.model or "(built-in)"}: {up.spec.options()}, {n_params:,} parameters\n')
    print('| image | KDSR PSNR-Y | bicubic PSNR-Y | gain |')
    print('|---|---|---|---|')
    for name, p_sr, p_bic, *_ in rows:
        print(f'| {name} | {p_sr:.2f} | {p_bic:.2f} | {p_sr - p_bic:+.2f} |')
    m_sr, m_bic = np.mean([r[1] for r in rows]), np.mean([r[2] for r in rows])
    print(f'| **mean** | **{m_sr:.2f}** | **{m_bic:.2f}** | **{m_sr - m_bic:+.2f}** |\n')
    print(f'KDSR above bicubic on {sum(r[1] > r[2] for r in rows)} of {len(rows)} crops.\n')
    if up_bf16 is not None:
        print('bf16 autocast against fp32 (8-bit outputs of the same LR):\n')
        print('| image | fp32 PSNR-Y | bf16 PSNR-Y | max abs diff (levels) | pixels off by > 1 level '
              '| PSNR bf16 vs fp32 |')
        print('|---|---|---|---|---|---|')
        for name, p_sr, _, p_bf, dmax, off, p_agree in rows:
            print(f'| {name} | {p_sr:.2f} | {p_bf:.2f} | {dmax} | {off:.3f}% | {p_agree:.1f} dB |')
        print(f'| **mean** | **{m_sr:.2f}** | **{np.mean([r[3] for r in rows]):.2f}** | '
              f'**{max(r[4] for r in rows)}** | **{np.mean([r[5] for r in rows]):.3f}%** | '
              f'**{np.mean([r[6] for r in rows]):.1f} dB** |\n')
    if args.no_speed:
        return

    img = cv2.imread(os.path.join(args.photos, 'val', sorted(os.listdir(os.path.join(args.photos, 'val')))[0]))
    img = np.ascontiguousarray(img[:256, :256])
    gan = tempfile.NamedTemporaryFile(suffix='.pth', delete=False)
    torch.save({'params': build_preset('KDSR_S-GAN').state_dict()}, gan.name)
    print(f'CPU speed ({torch.get_num_threads()} threads), 256x256 -> 1024x1024:')
    print(f'- this model: {seconds_per_megapixel(up, img):.2f} s per output megapixel')
    if up_bf16 is not None:
        print(f'- this model, bf16 autocast: {seconds_per_megapixel(up_bf16, img):.2f} s per output megapixel')
    gan_up = KDSRUpscaler(gan.name, device='cpu', bf16=False)
    print(f'- KDSR-GAN size (18.8M params), fp32: {seconds_per_megapixel(gan_up, img, 1):.2f} s per output megapixel')
    os.unlink(gan.name)


if __name__ == '__main__':
    main()
