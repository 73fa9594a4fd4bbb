"""Classic degradation of the paper (Eq. 1), in batches on any device: blur -> bicubic down -> noise.

Per sample: a 21x21 Gaussian kernel (isotropic, sigma; or anisotropic, lambda1, lambda2,
theta with Sigma = R diag(lambda1^2, lambda2^2) R^T), reflection padding 10, MATLAB-style
antialiased bicubic downsampling by 1/scale (the exact operator of BasicSR's
``matlab_functions.imresize``, applied as two matrices), additive Gaussian noise in LR space,
then 8-bit quantisation. Every sample of a batch gets its own kernel and noise level.
"""
import functools
import math

import torch
from basicsr.utils.matlab_functions import calculate_weights_indices
from torch.nn import functional as F

from ..errors import check_known_keys

KERNEL_SIZE = 21


def _grid(size, device, dtype):
    r = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    return torch.meshgrid(r, r, indexing='ij')  # (y, x)


def isotropic_gaussian_kernels(sigma, size=KERNEL_SIZE):
    """(B,) sigmas -> (B, size, size) kernels, k ~ exp(-(x^2 + y^2) / (2 sigma^2)), summing to 1."""
    y, x = _grid(size, sigma.device, sigma.dtype)
    k = torch.exp(-(x**2 + y**2)[None] / (2 * sigma[:, None, None]**2))
    return k / k.sum(dim=(1, 2), keepdim=True)


def anisotropic_gaussian_kernels(lambda1, lambda2, theta, size=KERNEL_SIZE):
    """(B,) lambda1, lambda2 (standard deviations along the rotated axes) and theta (radians)
    -> (B, size, size) kernels, k ~ exp(-1/2 p^T Sigma^-1 p), summing to 1."""
    cos, sin = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
    sigma = rot @ torch.diag_embed(torch.stack([lambda1**2, lambda2**2], -1)) @ rot.transpose(1, 2)
    inv = torch.linalg.inv(sigma)
    y, x = _grid(size, lambda1.device, lambda1.dtype)
    p = torch.stack([x, y], -1)  # (size, size, 2), (x, y) order as the authors' code
    quad = torch.einsum('hwi,bij,hwj->bhw', p, inv, p)
    k = torch.exp(-0.5 * quad)
    return k / k.sum(dim=(1, 2), keepdim=True)


def bicubic_matrix(in_length, scale, device=None, dtype=torch.float32):
    """The (out, in) matrix of BasicSR's MATLAB-style bicubic resize along one axis
    (antialiased, symmetric border handling), so that a batch resizes with two matmuls."""
    return _bicubic_matrix64(in_length, scale).to(device=device, dtype=dtype, copy=True)


@functools.lru_cache(maxsize=64)
def _bicubic_matrix64(in_length, scale):
    out_length = math.ceil(in_length * scale)
    weights, indices, sym_s, _ = calculate_weights_indices(in_length, out_length, scale, 'cubic', 4, True)
    mat = torch.zeros(out_length, in_length, dtype=torch.float64)
    for i in range(out_length):
        start = int(indices[i][0])  # into the symmetrically extended signal, as imresize reads it
        for k in range(weights.size(1)):
            a = start + k - sym_s  # position in the original signal, mirrored at the borders
            a = -a - 1 if a < 0 else (2 * in_length - a - 1 if a >= in_length else a)
            mat[i, a] += float(weights[i, k])
    return mat


def classic_degrade(hr, kernels, noise_sigma, scale):
    """HR (B, C, H, W) in [0, 1], kernels (B, k, k), noise sigma (B,) in 0-255 units ->
    8-bit-quantised LR (B, C, ceil(H/s), ceil(W/s)). Draw the noise from torch's RNG."""
    b, c, h, w = hr.shape
    pad = kernels.shape[-1] // 2
    blurred = F.conv2d(
        F.pad(hr.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode='reflect'),
        kernels.to(hr.dtype).repeat_interleave(c, dim=0).unsqueeze(1),
        groups=b * c).reshape(b, c, h, w)
    mh = bicubic_matrix(h, 1 / scale, hr.device, hr.dtype)
    mw = bicubic_matrix(w, 1 / scale, hr.device, hr.dtype)
    lr = mh @ blurred @ mw.t()
    lr = lr + torch.randn_like(lr) * (noise_sigma.to(hr.dtype) / 255).view(b, 1, 1, 1)
    return (lr.clamp(0, 1) * 255).round() / 255


# The authors' iso sigma ranges by scale (DASR/KDSR-classic: sigma_max = scale, x4: U(0.2, 4.0)).
ISO_SIGMA_RANGE = {2: (0.2, 2.0), 3: (0.2, 3.0), 4: (0.2, 4.0)}
CLASSIC_DEFAULTS = dict(type='iso', sig_min=None, sig_max=None, lambda_min=0.2, lambda_max=4.0, noise=0.0,
                        per_batch=False)


class ClassicDegrader:
    """``degrader(gt) -> lq`` for training batches: random classic degradations of Eq. 1.

    Each sample gets its own kernel and noise level (``per_batch: true``: one for the whole
    batch, as the authors' code). Draws come from torch's global RNG on the GT's device, which
    BasicSR seeds with ``manual_seed``, so a run is reproducible.

    Args:
        opt (dict): the ``classic_degradation`` option section. ``type``: ``iso`` (sigma ~
            U(sig_min, sig_max); default the authors' range for the scale) or ``aniso``
            (lambda1, lambda2 ~ U(lambda_min, lambda_max), theta ~ U(0, pi)); ``noise``: the
            noise std is U(0, noise) in 0-255 units (0: none); ``per_batch``.
        scale (int): Downsampling factor.
    """

    def __init__(self, opt, scale):
        check_known_keys('classic_degradation', opt, CLASSIC_DEFAULTS)
        self.opt = {**CLASSIC_DEFAULTS, **opt}
        if self.opt['type'] not in ('iso', 'aniso'):
            raise ValueError(f"classic_degradation:type: '{self.opt['type']}' is not iso or aniso.")
        default = ISO_SIGMA_RANGE.get(scale, (0.2, 4.0))
        self.sigma_range = (self.opt['sig_min'] if self.opt['sig_min'] is not None else default[0],
                            self.opt['sig_max'] if self.opt['sig_max'] is not None else default[1])
        self.scale = scale

    def _uniform(self, n, low, high, device):
        return low + (high - low) * torch.rand(n, device=device, dtype=torch.float64)

    def sample(self, batch, device):
        """Draw ``(kernels (B, 21, 21), noise sigma (B,))`` for a batch of ``batch`` samples."""
        n = 1 if self.opt['per_batch'] else batch
        if self.opt['type'] == 'iso':
            kernels = isotropic_gaussian_kernels(self._uniform(n, *self.sigma_range, device))
        else:
            lam = (self.opt['lambda_min'], self.opt['lambda_max'])
            kernels = anisotropic_gaussian_kernels(
                self._uniform(n, *lam, device), self._uniform(n, *lam, device), self._uniform(n, 0, math.pi, device))
        noise = self._uniform(n, 0, self.opt['noise'], device)
        return kernels.float().expand(batch, -1, -1), noise.float().expand(batch)

    def __call__(self, gt):
        kernels, noise = self.sample(gt.size(0), gt.device)
        return classic_degrade(gt, kernels, noise, self.scale)
