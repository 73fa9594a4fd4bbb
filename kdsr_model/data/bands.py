"""Evaluation bands for a blind x4 model: clean, mild and heavy degradations of HR photos.

Frozen: the built-in model is selected and reported on these, so they do not change with
the training recipe. Every band ends with MATLAB-style antialiased bicubic downscaling
(BasicSR's ``imresize``, as MATLAB and PIL) and 8-bit rounding:

- ``clean``: downscaling only.
- ``mild``: isotropic Gaussian blur (sigma U(0.8, 1.6) HR pixels), downscaling, Gaussian
  noise (std U(1, 4) of 255), JPEG quality U(70, 90).
- ``heavy``: Gaussian blur (sigma U(2.0, 3.2); half the photos anisotropic with axes
  U(1.2, 3.6) at a random angle), downscaling, Gaussian noise (std U(8, 15)), JPEG quality
  U(35, 55).

Draws depend only on the band, ``seed`` and the photo's file name, so a photo gets the same
LR whatever else is in the folder.
"""
import hashlib
import math

import cv2
import numpy as np
import torch

from .classic import anisotropic_gaussian_kernels, classic_degrade, isotropic_gaussian_kernels

BANDS = ('clean', 'mild', 'heavy')
SCALE = 4


def band_rng(band, name, seed=0):
    """The NumPy generator of one (band, photo) pair."""
    digest = hashlib.sha256(f'{band}/{name}/{seed}'.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], 'little'))


def band_params(band, name, seed=0):
    """The degradation drawn for one photo in one band: a dict with ``kernel`` (None or
    ``('iso', sigma)`` / ``('aniso', l1, l2, theta)``), ``noise`` (std, 0-255) and ``jpeg``
    (quality, or None)."""
    if band not in BANDS:
        raise ValueError(f"band '{band}' is not one of {', '.join(BANDS)}")
    rng = band_rng(band, name, seed)
    if band == 'clean':
        return dict(kernel=None, noise=0.0, jpeg=None)
    if band == 'mild':
        return dict(kernel=('iso', rng.uniform(0.8, 1.6)), noise=rng.uniform(1, 4), jpeg=int(rng.integers(70, 91)))
    if rng.random() < 0.5:
        kernel = ('iso', rng.uniform(2.0, 3.2))
    else:
        kernel = ('aniso', rng.uniform(1.2, 3.6), rng.uniform(1.2, 3.6), rng.uniform(0, math.pi))
    return dict(kernel=kernel, noise=rng.uniform(8, 15), jpeg=int(rng.integers(35, 56)))


def _kernel(spec):
    if spec is None:  # a delta: no blur
        k = torch.zeros(1, 21, 21, dtype=torch.float64)
        k[0, 10, 10] = 1
        return k
    values = torch.tensor(spec[1:], dtype=torch.float64)[:, None]
    if spec[0] == 'iso':
        return isotropic_gaussian_kernels(values[0])
    return anisotropic_gaussian_kernels(values[0], values[1], values[2])


def degrade_band(hr, band, name, seed=0):
    """HR ``uint8`` BGR image (sides divisible by 4) -> its LR ``uint8`` BGR image in ``band``."""
    h, w = hr.shape[:2]
    if h % SCALE or w % SCALE:
        raise ValueError(f'{name}: HR size {w}x{h} is not divisible by {SCALE}; crop it first')
    p = band_params(band, name, seed)
    gen = torch.Generator().manual_seed(int(band_rng(band + '/noise', name, seed).integers(2**62)))
    x = torch.from_numpy(np.ascontiguousarray(hr[:, :, ::-1])).permute(2, 0, 1)[None].double() / 255
    noise = torch.randn(1, 3, h // SCALE, w // SCALE, generator=gen, dtype=torch.float64)
    lr = classic_degrade(x, _kernel(p['kernel']), torch.zeros(1, dtype=torch.float64), SCALE)
    if p['noise']:
        lr = ((lr + noise * p['noise'] / 255).clamp(0, 1) * 255).round() / 255
    lr = (lr[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)
    if p['jpeg'] is not None:
        ok, buf = cv2.imencode('.jpg', lr, [cv2.IMWRITE_JPEG_QUALITY, p['jpeg']])
        lr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(lr)


def centre_crop(img, size):
    """The centre ``size`` x ``size`` crop (the whole side where the image is smaller)."""
    h, w = img.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return np.ascontiguousarray(img[top:top + size, left:left + size])
