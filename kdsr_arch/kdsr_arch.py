"""The KDSR super-resolution generator ``G``: stacked IDR-DCRB blocks guided by an IDR.

Module and parameter names follow the authors' code so that their checkpoints load with
``strict=True`` (``head.0``, ``body.0.body.{i}.da_conv1.kernel.{0,2}``, ``body.1``,
``tail.0.{0,2}``, ``tail.1``, ``sub_mean``, ``add_mean``).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# DIV2K RGB mean used by the authors' MeanShift layers.
RGB_MEAN = (0.4488, 0.4371, 0.4040)
LRELU_SLOPE = 0.1


def default_conv(in_channels, out_channels, kernel_size=3, bias=True):
    """A 'same'-padded convolution, as in EDSR/DASR."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


def prefers_channels_last(x: torch.Tensor, training: bool) -> bool:
    """Whether a net should run ``x`` channels_last: on CPU outside training, where oneDNN's
    convolutions then skip their NCHW reorders (1.1-1.35x, docs/BENCHMARKS.md; outputs equal
    within 1e-6). Callers that pick the layout themselves (the upscaler) pass it in already."""
    return (not training and x.device.type == 'cpu' and x.dim() == 4
            and not x.is_contiguous(memory_format=torch.channels_last))


def check_scale(scale):
    """Return ``scale`` as an int if the upsampler supports it, else raise ValueError."""
    if scale == 3 or (isinstance(scale, int) and scale >= 2 and scale & (scale - 1) == 0):
        return int(scale)
    raise ValueError(f'scale={scale!r} is not supported: KDSR upsamples by 3 or a power of two (2, 4, 8).')


class MeanShift(nn.Conv2d):
    """Frozen 1x1 conv that subtracts (sign=-1) or adds (sign=+1) the RGB mean.

    Its weight and bias are real (frozen) parameters, so they appear in the state_dict.
    """

    def __init__(self, rgb_range=1, rgb_mean=RGB_MEAN, rgb_std=(1.0, 1.0, 1.0), sign=-1):
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(rgb_std)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1)
        self.bias.data = sign * rgb_range * torch.tensor(rgb_mean) / std
        for p in self.parameters():
            p.requires_grad = False


class Upsampler(nn.Sequential):
    """Conv + PixelShuffle stages: log2(scale) x2 stages, or one x3 stage. No activation.

    Args:
        scale (int): 2, 3, 4 or 8.
        n_feats (int): Channel number.
    """

    def __init__(self, scale, n_feats):
        scale = check_scale(scale)
        layers = []
        if scale == 3:
            layers += [default_conv(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
        else:
            for _ in range(int(math.log2(scale))):
                layers += [default_conv(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
        super().__init__(*layers)


class IDR_DDC(nn.Module):
    """IDR-based dynamic depthwise convolution.

    An MLP (``kernel``) turns the per-image IDR (B x C) into one 3x3 kernel per channel and
    image; the features are filtered depthwise with them. The whole batch runs as one
    grouped convolution with B*C groups.

    Args:
        n_feats (int): Channel number C of the features and of the IDR.
    """

    def __init__(self, n_feats):
        super().__init__()
        self.n_feats = n_feats
        self.kernel = nn.Sequential(
            nn.Linear(n_feats, n_feats, bias=False),
            nn.LeakyReLU(LRELU_SLOPE, inplace=True),
            nn.Linear(n_feats, 9 * n_feats, bias=False),
        )

    def dynamic_kernels(self, idr):
        """(B, C) IDR -> (B*C, 1, 3, 3) depthwise kernels, channel-major within a sample."""
        return self.kernel(idr).reshape(-1, 1, 3, 3)

    def forward(self, x, idr):
        b, c, h, w = x.shape
        weight = self.dynamic_kernels(idr).to(x.dtype)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # Keep channels_last features channels_last: a kernel tensor in the default layout
            # makes the convolution copy its input to NCHW and back (measured: ~30% of the call).
            weight = weight.contiguous(memory_format=torch.channels_last)
        if b == 1:
            return F.conv2d(x, weight, padding=1, groups=c)
        # reshape (not view): the features may be channels_last or otherwise non-contiguous.
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, padding=1, groups=b * c)
        return out.reshape(b, c, h, w)


class IDR_DCRB(nn.Module):
    """IDR-based depthwise dynamic convolution residual block.

    out = conv1(LeakyReLU(da_conv1(x, idr))) + x

    Args:
        n_feats (int): Channel number.
    """

    def __init__(self, n_feats):
        super().__init__()
        self.da_conv1 = IDR_DDC(n_feats)
        self.conv1 = default_conv(n_feats, n_feats, 3)
        self.relu = nn.LeakyReLU(LRELU_SLOPE, inplace=True)

    def forward(self, x, idr):
        return self.conv1(self.relu(self.da_conv1(x, idr))) + x


class DAG(nn.Module):
    """A group of IDR-DCRBs applied in order with the same IDR (no group-level skip).

    Args:
        n_feats (int): Channel number.
        n_blocks (int): Number of IDR-DCRBs.
    """

    def __init__(self, n_feats, n_blocks):
        super().__init__()
        self.body = nn.ModuleList([IDR_DCRB(n_feats) for _ in range(n_blocks)])

    def forward(self, x, idr):
        for block in self.body:
            x = block(x, idr)
        return x


class KDSR(nn.Module):
    """KDSR super-resolution generator, guided by an implicit degradation representation.

    lr -> sub_mean -> head -> IDR-DCRBs -> conv -> + head output -> upsampler -> conv -> add_mean

    Args:
        n_feats (int): Channel number C (also the IDR length). Default: 128.
        scale (int): Upsampling factor, 2, 3, 4 or 8. Default: 4.
        n_sr_blocks (int): Number of IDR-DCRBs. Default: 42.
        rgb_range (float): Pixel range of the images. Default: 1.
    """

    def __init__(self, n_feats=128, scale=4, n_sr_blocks=42, rgb_range=1):
        super().__init__()
        self.scale = check_scale(scale)
        self.n_feats = n_feats
        self.sub_mean = MeanShift(rgb_range, sign=-1)
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(default_conv(3, n_feats, 3))
        self.body = nn.ModuleList([DAG(n_feats, n_sr_blocks), default_conv(n_feats, n_feats, 3)])
        self.tail = nn.Sequential(Upsampler(self.scale, n_feats), default_conv(n_feats, 3, 3))

    # LR pixels of context ``reconstruct`` needs on each side: the upsampler's and the tail's 3x3
    # convs at 1x, 2x and 4x add up to under 2 LR pixels.
    tail_radius = 2

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context the generator uses on each side of an output pixel: head conv,
        two 3x3 convs per IDR-DCRB, body conv, and :attr:`tail_radius`."""
        return 1 + 2 * len(self.body[0].body) + 1 + self.tail_radius

    def features(self, x: torch.Tensor, idr: torch.Tensor) -> torch.Tensor:
        """LR-resolution features: head, IDR-DCRBs, body conv and the long skip (nearly all of
        the receptive field)."""
        x = self.head(self.sub_mean(x))
        res = self.body[1](self.body[0](x, idr))
        res += x
        return res

    def reconstruct(self, res: torch.Tensor) -> torch.Tensor:
        """Features -> SR image: upsampler and tail (a receptive radius under 2 LR pixels)."""
        return self.add_mean(self.tail(res))

    def forward(self, x: torch.Tensor, idr: torch.Tensor) -> torch.Tensor:
        """Upscale ``x`` (B, 3, H, W) in [0, rgb_range] guided by ``idr`` (B, n_feats); on CPU in
        eval mode computed channels_last, returned in the default layout."""
        if prefers_channels_last(x, self.training):
            return self.reconstruct(self.features(x.contiguous(memory_format=torch.channels_last), idr)).contiguous()
        return self.reconstruct(self.features(x, idr))
