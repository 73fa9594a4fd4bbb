"""A mixture of degradations for one blind model: clean, classic, mild and full real-world.

A model trained only on Real-ESRGAN's heaviest mix smooths clean photos; one trained only on
bicubic cannot restore. :class:`MixtureDegrader` draws one branch per training batch with
the weights of the ``degradation_mixture`` option section, and the models' pair pool mixes
the batches, so that every update sees several kinds of input:

- ``clean``: MATLAB-style antialiased bicubic downscaling only (BasicSR's ``imresize``).
- ``classic``: Gaussian blur (isotropic or anisotropic), downscaling, Gaussian noise, then
  JPEG with probability ``jpeg_prob`` (:func:`kdsr_model.data.classic.classic_degrade`
  and BasicSR's DiffJPEG); each sample draws its own values.
- ``classic_light``: the same with its own ranges (``classic_light_opt`` over
  :data:`CLASSIC_LIGHT_DEFAULTS`: slight blur, little noise, mild JPEG), so that light and
  heavy classic input can both be in one mixture with their own weights.
- ``realworld_mild``: BasicSR's second-order pipeline with milder settings (``mild_opt``
  over :data:`MILD_DEFAULTS`): the first blur uses the dataset's second-order kernel
  (``blur_sigma2``), no final sinc filter, less resizing, noise and JPEG.
- ``realworld``: the same pipeline with the model's top-level keys (the authors' settings).

Before any branch, the GT batch can be downscaled (antialiased bicubic) by a factor drawn
from ``gt_rescale`` per batch, so the model meets more than one scale of detail. With
``detail_crops: {prob: P, tries: K}`` it is then cropped to ``gt_size`` before any branch
degrades it, and with probability P a sample's crop is the most detailed of K random ones
in the batch (:func:`detail_crops`): photos are mostly smooth, and a model that has seldom seen dense fine
texture under light degradation smooths it.

With ``shared_degradation: 4`` the batch comes in groups of 4 consecutive crops that share one
degradation draw (kernel, noise level, resizing, JPEG quality; not the noise itself): each
group is laid out as a 2x2 mosaic, degraded as one image by the drawn branch, and split
again (:func:`mosaic`, :func:`unmosaic`). The pair pool keeps the groups together, and the
``IDRGroupLoss`` of :mod:`kdsr_model.losses` can then ask the IDRs of a group to agree: the
IDR should follow the degradation, not the content. Near the seams a crop sees a few LR pixels
of its neighbours' blur, nothing more.
"""
import random

import numpy as np
import torch
from torch.nn import functional as F

from .classic import anisotropic_gaussian_kernels, classic_degrade, isotropic_gaussian_kernels
from .realworld import RealWorldDegrader
from ..errors import check_known_keys

BRANCHES = ('clean', 'classic', 'classic_light', 'realworld_mild', 'realworld')
CLASSIC_MIX_DEFAULTS = dict(aniso_prob=0.5, sigma=[0.2, 3.0], lambda_range=[0.2, 4.0], noise=[0, 15], jpeg_prob=0.7,
                            jpeg_range=[40, 95])
CLASSIC_LIGHT_DEFAULTS = dict(aniso_prob=0.5, sigma=[0.2, 2.0], lambda_range=[0.2, 2.5], noise=[0, 6], jpeg_prob=0.8,
                              jpeg_range=[60, 95])
MILD_DEFAULTS = dict(
    resize_prob=[0.2, 0.5, 0.3], resize_range=[0.5, 1.2], gaussian_noise_prob=0.5, noise_range=[1, 10],
    poisson_scale_range=[0.05, 1.0], gray_noise_prob=0.4, jpeg_range=[60, 95], second_blur_prob=0.2,
    resize_prob2=[0.3, 0.4, 0.3], resize_range2=[0.6, 1.2], gaussian_noise_prob2=0.5, noise_range2=[1, 8],
    poisson_scale_range2=[0.05, 0.8], gray_noise_prob2=0.4, jpeg_range2=[60, 95])  # yapf: disable
MIXTURE_KEYS = BRANCHES + ('classic_opt', 'classic_light_opt', 'mild_opt', 'gt_rescale', 'detail_crops',
                           'shared_degradation')
GROUP = 4  # crops per shared degradation: a 2x2 mosaic
_KERNEL_KEYS = ('kernel1', 'kernel2', 'sinc_kernel')


def mosaic(x):
    """(4N, C, H, W) -> (N, C, 2H, 2W): each 4 consecutive samples laid out as a 2x2 mosaic."""
    b, c, h, w = x.shape
    return x.reshape(b // GROUP, 2, 2, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(b // GROUP, c, 2 * h, 2 * w)


def unmosaic(x):
    """The inverse of :func:`mosaic`: (N, C, 2H, 2W) -> (4N, C, H, W)."""
    n, c, h2, w2 = x.shape
    h, w = h2 // 2, w2 // 2
    return x.reshape(n, c, 2, h, 2, w).permute(0, 2, 4, 1, 3, 5).reshape(n * GROUP, c, h, w)


def random_crops(gt, size):
    """One random ``size`` x ``size`` crop per sample of a (B, C, H, W) batch (torch's RNG)."""
    h, w = gt.shape[-2:]
    tops = torch.randint(0, h - size + 1, (gt.size(0), )).tolist()
    lefts = torch.randint(0, w - size + 1, (gt.size(0), )).tolist()
    return torch.stack([img[:, t:t + size, s:s + size] for img, t, s in zip(gt, tops, lefts)])


def detail(gt):
    """Per-pixel fine detail (B, 1, H, W): the luminance's distance from its 5x5 box mean."""
    y = gt.mean(1, keepdim=True)
    return (y - F.avg_pool2d(y, 5, stride=1, padding=2, count_include_pad=False)).abs()


def detail_crops(gt, size, prob, tries):
    """``size`` x ``size`` crops of a (B, C, H, W) batch, one per sample (torch's RNG). Each sample
    is, with probability ``prob``, the crop with the most fine detail (:func:`detail`, summed) of
    ``tries`` random positions in random images of the batch (so detailed photos are drawn more
    often, and their detailed parts), else a random crop of its own image."""
    b, _, h, w = gt.shape
    images = torch.randint(0, b, (b, tries))
    tops = torch.randint(0, h - size + 1, (b, tries))
    lefts = torch.randint(0, w - size + 1, (b, tries))
    sums = F.pad(detail(gt).double().cumsum(-1).cumsum(-2), (1, 0, 1, 0))[:, 0].cpu()  # (B, H+1, W+1) integral image
    scores = (sums[images, tops + size, lefts + size] - sums[images, tops, lefts + size] -
              sums[images, tops + size, lefts] + sums[images, tops, lefts])
    rows = torch.arange(b)
    own = torch.rand(b) >= prob
    pick = torch.where(own, torch.zeros(b, dtype=torch.long), scores.argmax(1))
    images = torch.where(own, rows, images[rows, pick]).tolist()
    tops, lefts = tops[rows, pick].tolist(), lefts[rows, pick].tolist()
    return torch.stack([gt[i, :, t:t + size, s:s + size] for i, t, s in zip(images, tops, lefts)])


def _shared_opt(value):
    if isinstance(value, bool) or value not in (1, GROUP):
        raise ValueError(f'degradation_mixture:shared_degradation: 1 (every crop draws its own degradation) or '
                         f'{GROUP} (groups of {GROUP} crops share one), got {value!r}.')
    return value


def _check_range(name, value, low=None, high=None):
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
            and value[0] <= value[1]):
        raise ValueError(f'degradation_mixture:{name}: expected [low, high] with low <= high, got {value!r}.')
    if (low is not None and value[0] < low) or (high is not None and value[1] > high):
        raise ValueError(f'degradation_mixture:{name}: {value!r} is outside [{low}, {high}].')
    return [float(v) for v in value]


def _classic_ranges(key, mix, defaults):
    """A classic branch's settings: ``defaults`` updated by ``mix[key]``, checked."""
    opt = {**defaults, **(mix.get(key) or {})}
    check_known_keys(f'degradation_mixture:{key}', opt, defaults)
    for name in ('sigma', 'lambda_range', 'noise'):
        opt[name] = _check_range(f'{key}:{name}', opt[name], 0)
    opt['jpeg_range'] = _check_range(f'{key}:jpeg_range', opt['jpeg_range'], 1, 100)
    return opt


def _detail_crops_opt(value):
    if not isinstance(value, dict):
        raise ValueError(f'degradation_mixture:detail_crops: expected {{prob: P, tries: K}}, got {value!r}.')
    check_known_keys('degradation_mixture:detail_crops', value, ('prob', 'tries'))
    prob, tries = value.get('prob', 1.0), value.get('tries', 4)
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
        raise ValueError(f'degradation_mixture:detail_crops:prob: a probability in [0, 1], got {prob!r}.')
    if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
        raise ValueError(f'degradation_mixture:detail_crops:tries: an integer >= 1, got {tries!r}.')
    return float(prob), tries


class MixtureDegrader:
    """``degrader(batch) -> (lq, gt)``: a ``RealESGANDataset`` batch -> LQ and its GT crop of
    ``gt_size``, through one branch drawn per call. Draws come from Python's ``random``,
    NumPy and torch, which BasicSR seeds with ``manual_seed``.

    Args:
        opt (dict): the model options: ``scale``, ``gt_size``, the real-world keys and the
            ``degradation_mixture`` section (branch weights ``clean``, ``classic``,
            ``classic_light``, ``realworld_mild``, ``realworld``; ``classic_opt``,
            ``classic_light_opt``, ``mild_opt``, ``gt_rescale``, ``detail_crops``,
            ``shared_degradation``).
        device: Where the synthesis runs.
    """

    def __init__(self, opt, device='cpu'):
        mix = dict(opt['degradation_mixture'])
        check_known_keys('degradation_mixture', mix, MIXTURE_KEYS)
        weights = []
        for name in BRANCHES:
            w = mix.get(name, 0)
            if not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f'degradation_mixture:{name}: a branch weight must be a number >= 0, got {w!r}.')
            weights.append(float(w))
        if sum(weights) <= 0:
            raise ValueError(f'degradation_mixture: give at least one of {", ".join(BRANCHES)} a weight above 0.')
        self.weights = [w / sum(weights) for w in weights]
        self.classic = {
            'classic': _classic_ranges('classic_opt', mix, CLASSIC_MIX_DEFAULTS),
            'classic_light': _classic_ranges('classic_light_opt', mix, CLASSIC_LIGHT_DEFAULTS)
        }
        self.gt_rescale = _check_range('gt_rescale', mix['gt_rescale'], 0.1, 1) if mix.get('gt_rescale') else None
        self.detail_crops = _detail_crops_opt(mix['detail_crops']) if mix.get('detail_crops') else None
        self.shared = _shared_opt(mix.get('shared_degradation', 1))
        batch_size = ((opt.get('datasets') or {}).get('train') or {}).get('batch_size_per_gpu')
        if isinstance(batch_size, int):
            self._check_batch(batch_size)
        self.scale, self.gt_size = opt['scale'], opt['gt_size']
        self.gt_usm = opt.get('gt_usm', False)
        # the HR side a branch degrades: a whole 2x2 mosaic when crops share a degradation
        self.branch_size = self.gt_size * (2 if self.shared > 1 else 1)
        opt = {**opt, 'gt_size': self.branch_size}
        self.realworld = RealWorldDegrader(opt, device)
        self.mild = RealWorldDegrader({**opt, **MILD_DEFAULTS, **(mix.get('mild_opt') or {})}, device)
        self.device = self.realworld.device
        self.usm_sharpener = self.realworld.usm_sharpener
        self.jpeger = self.realworld.jpeger
        self.last_branch = None

    def _check_batch(self, batch_size):
        if batch_size % self.shared:
            raise ValueError(f'degradation_mixture:shared_degradation: {self.shared} needs a batch size per GPU '
                             f'divisible by {self.shared}, got {batch_size}; change '
                             f'datasets:train:batch_size_per_gpu.')

    def _rescale(self, gt):
        if self.gt_rescale is None:
            return gt
        h, w = gt.shape[-2:]
        factor = max(np.random.uniform(*self.gt_rescale), self.gt_size / min(h, w))
        if factor >= 1:
            return gt
        s = self.scale  # sides stay multiples of the scale: the real-world branches need an exact LR
        size = (max(self.gt_size, round(h * factor) // s * s), max(self.gt_size, round(w * factor) // s * s))
        return F.interpolate(gt, size=size, mode='bicubic', antialias=True, align_corners=False).clamp(0, 1)

    def _uniform(self, n, low, high):
        return low + (high - low) * torch.rand(n, device=self.device, dtype=torch.float64)

    def _classic_kernels(self, n, opt):
        iso = isotropic_gaussian_kernels(self._uniform(n, *opt['sigma']))
        lam = opt['lambda_range']
        aniso = anisotropic_gaussian_kernels(self._uniform(n, *lam), self._uniform(n, *lam),
                                             self._uniform(n, 0, np.pi))
        pick = (torch.rand(n, device=self.device) < opt['aniso_prob']).view(n, 1, 1)
        return torch.where(pick, aniso, iso).float()

    def _synthetic(self, gt, branch, size):
        """The clean and classic branches: per-sample ``size`` crops, then Eq. 1 (+ JPEG)."""
        gt = random_crops(gt, size)
        if self.gt_usm:
            gt = self.usm_sharpener(gt)
        n = gt.size(0)
        if branch == 'clean':
            delta = torch.ones(n, 1, 1, device=self.device)  # a 1x1 identity kernel: no blur
            return classic_degrade(gt, delta, torch.zeros(n, device=self.device), self.scale), gt
        opt = self.classic[branch]
        lq = classic_degrade(gt, self._classic_kernels(n, opt), self._uniform(n, *opt['noise']).float(), self.scale)
        jpeg = torch.rand(n, device=self.device) < opt['jpeg_prob']
        if jpeg.any():
            quality = self._uniform(n, *opt['jpeg_range']).float()
            compressed = (self.jpeger(lq.contiguous(), quality=quality).clamp(0, 1) * 255).round() / 255
            lq = torch.where(jpeg.view(n, 1, 1, 1), compressed, lq)
        return lq, gt

    @torch.no_grad()
    def __call__(self, batch):
        branch = random.choices(BRANCHES, self.weights)[0]
        self.last_branch = branch
        gt = self._rescale(batch['gt'].to(self.device))
        if self.detail_crops is not None:
            gt = detail_crops(gt, self.gt_size, *self.detail_crops)
        if self.shared == 1:
            return self._degrade(branch, gt, batch)
        self._check_batch(gt.size(0))
        if self.detail_crops is None:
            gt = random_crops(gt, self.gt_size)
        batch = {k: v[::GROUP] if k in _KERNEL_KEYS else v for k, v in batch.items()}  # a group's kernels: its first
        lq, gt = self._degrade(branch, mosaic(gt), batch)
        return unmosaic(lq), unmosaic(gt)

    def _degrade(self, branch, gt, batch):
        if branch in ('clean', 'classic', 'classic_light'):
            return self._synthetic(gt, branch, self.branch_size)
        data = dict(batch, gt=gt)
        if branch == 'realworld_mild':
            pulse = torch.zeros_like(batch['sinc_kernel'])
            pulse[..., pulse.shape[-2] // 2, pulse.shape[-1] // 2] = 1
            data.update(kernel1=batch['kernel2'], sinc_kernel=pulse)
            return self.mild(data)
        return self.realworld(data)
