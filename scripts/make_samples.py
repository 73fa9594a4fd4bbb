"""Re-create datasets/samples/ from scikit-image's bundled sample photos (public domain / CC0).

    python scripts/make_samples.py
"""
import os

import cv2
import numpy as np
from skimage import data

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'datasets', 'samples')


def center_crop(img, h, w):
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[top:top + h, left:left + w])


def write(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main():
    train = {'astronaut': data.astronaut(), 'coffee': data.coffee(), 'rocket': data.rocket()}
    for name, img in train.items():
        write(os.path.join(OUT, 'train', f'{name}.png'), center_crop(img, 400, 400))
    with open(os.path.join(OUT, 'meta_info_train.txt'), 'w') as f:
        f.writelines(f'{name}.png\n' for name in sorted(train))
    gt = center_crop(data.chelsea(), 128, 128)
    write(os.path.join(OUT, 'val', 'gt', 'chelsea.png'), gt)
    write(os.path.join(OUT, 'val', 'lq', 'chelsea.png'), cv2.resize(gt, (32, 32), interpolation=cv2.INTER_CUBIC))


if __name__ == '__main__':
    main()
