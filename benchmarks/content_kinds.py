"""What the built-in model does badly: synthetic text, a screenshot, a line drawing (x4 from
an antialiased downscale), and final scales other than x4 on photos (``--outscale``: the net's
x4 then a Lanczos resize), each against bicubic. PSNR-Y with a 4-pixel border.

    python benchmarks/content_kinds.py [--model PATH] [--figures DIR]

Prints a Markdown table; ``--figures`` writes bicubic | KDSR | HR strips of the synthetic images.
"""
import argparse
import glob
import os

import cv2
import numpy as np
from basicsr.metrics import calculate_psnr

from kdsr_model.upscaler import KDSRUpscaler

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'datasets', 'samples', 'train')
rng = np.random.default_rng(0)


def text_img():
    img = np.full((384, 384, 3), 255, np.uint8)
    for i in range(12):
        cv2.putText(img, 'The quick brown fox 0123', (8, 28 + 30 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.62, (0, 0, 0), 1, cv2.LINE_AA)
    return img
def screenshot():
    img = np.full((384, 384, 3), 240, np.uint8)
    cv2.rectangle(img, (0, 0), (383, 40), (60, 90, 160), -1)
    cv2.putText(img, 'File  Edit  View  Help', (10, 27), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    for i in range(8):
        y = 60 + 38 * i
        cv2.rectangle(img, (20, y), (360, y + 28), (255, 255, 255), -1); cv2.rectangle(img, (20, y), (360, y + 28), (150, 150, 150), 1)
        cv2.putText(img, f'item {i}: settings value {i * 7}', (28, y + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (30, 30, 30), 1, cv2.LINE_AA)
    return img
def drawing():
    img = np.full((384, 384, 3), 255, np.uint8)
    for _ in range(40):
        p = rng.integers(0, 384, 4)
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), tuple(int(c) for c in rng.integers(0, 200, 3)), int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(10):
        c = rng.integers(40, 344, 2)
        cv2.circle(img, (int(c[0]), int(c[1])), int(rng.integers(10, 40)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1, cv2.LINE_AA)
    return img

def psnr(a, b):
    return calculate_psnr(a, b, 4, test_y_channel=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default=None, help='a KDSR student (default: the built-in model)')
    parser.add_argument('--figures', default=None, help='folder for bicubic | KDSR | HR strips')
    args = parser.parse_args()
    up = KDSRUpscaler(args.model, device='cpu', bf16=False)
    print('| content | scale | bicubic PSNR-Y | KDSR PSNR-Y | gain |\n|---|---|---|---|---|')
    for name, hr in (('text', text_img()), ('screenshot', screenshot()), ('line drawing', drawing())):
        lr = cv2.resize(hr, (96, 96), interpolation=cv2.INTER_AREA)
        bic = cv2.resize(lr, (384, 384), interpolation=cv2.INTER_CUBIC)
        sr = up.enhance(lr)[0]
        print(f'| {name} | x4 | {psnr(bic, hr):.2f} | {psnr(sr, hr):.2f} | {psnr(sr, hr) - psnr(bic, hr):+.2f} |')
        if args.figures:
            os.makedirs(args.figures, exist_ok=True)
            cv2.imwrite(os.path.join(args.figures, f'{name.replace(" ", "_")}.png'), np.hstack([bic, sr, hr]))
    photos = sorted(glob.glob(os.path.join(SAMPLES, '*.png')))
    for scale in (2, 3, 4):
        gains = []
        for path in photos:
            hr = cv2.imread(path, cv2.IMREAD_COLOR)[:384, :384]
            size = 384 // scale
            hr = hr[:size * scale, :size * scale]
            lr = cv2.resize(hr, (size, size), interpolation=cv2.INTER_AREA)
            bic = cv2.resize(lr, hr.shape[1::-1], interpolation=cv2.INTER_CUBIC)
            sr = up.enhance(lr, outscale=scale)[0]
            gains.append((psnr(bic, hr), psnr(sr, hr)))
        a, b = np.mean(gains, 0)
        print(f'| {len(photos)} sample photos, clean | x{scale} | {a:.2f} | {b:.2f} | {b - a:+.2f} |')


if __name__ == '__main__':
    main()
