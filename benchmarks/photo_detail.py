"""How much fine texture photos carry: the measure the mixture's ``detail_crops`` ranks crops by.

    python benchmarks/photo_detail.py DIR [DIR ...] [--scales 1,0.5,0.333] [--crop 192]

For every image of the folders and every scale (antialiased ``cv2.INTER_AREA`` downscaling,
as ``kdsr-prepare --scales``), the mean fine detail (:func:`kdsr_model.data.mixture.detail`,
the luminance's distance from its 5x5 box mean, 0-255) of ``--crop`` x ``--crop`` windows
every quarter crop: their median and their maximum. It compares training photos with the
photos a model is judged on: a model that has seldom seen dense texture under light
degradation smooths it (docs/MODEL.md, "Stage 16").
"""
import argparse
import os
import sys

import cv2
import torch
from torch.nn import functional as F

from kdsr_model.data.mixture import detail
from kdsr_model.io import is_image_name
from kdsr_model.prepare_data import scaled_copies


def window_detail(img, crop):
    """Mean fine detail (0-255) of every ``crop`` x ``crop`` window, ``crop // 4`` apart (1-D tensor)."""
    x = torch.from_numpy(img[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    return (F.avg_pool2d(detail(x), crop, stride=max(1, crop // 4)) * 255).flatten()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folders', nargs='+', help='folders of photos')
    parser.add_argument('--scales', default='1,0.5', help='scales to measure at (default 1,0.5)')
    parser.add_argument('--crop', type=int, default=192, help='window side in pixels (default 192: 48x48 LR x4)')
    args = parser.parse_args(argv)
    scales = [float(s) for s in args.scales.split(',')]
    print('| folder | photo | ' + ' | '.join(f'x{s:g} median / max' for s in scales) + ' |')
    print('|---|---|' + '---|' * len(scales))
    for folder in args.folders:
        for name in sorted(f for f in os.listdir(folder) if is_image_name(f)):
            img = cv2.imread(os.path.join(folder, name), cv2.IMREAD_COLOR)
            if img is None:
                print(f'photo_detail: skipped {os.path.join(folder, name)}: not a readable image', file=sys.stderr)
                continue
            cells = []
            for _, scaled in scaled_copies(img, scales):
                if min(scaled.shape[:2]) < args.crop:
                    cells.append('too small')
                    continue
                d = window_detail(scaled, args.crop)
                cells.append(f'{d.median().item():.2f} / {d.max().item():.2f}')
            print(f'| {os.path.basename(os.path.normpath(folder))} | {name} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
