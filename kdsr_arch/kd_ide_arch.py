"""KD-IDE: the knowledge-distillation based implicit degradation estimator.

Teacher and student share this encoder; they differ only in ``in_channels`` (student: the
LR image, 3; teacher: LR plus the pixel-unshuffled HR, 3 + 3*s*s). Both can be given fixed,
parameter-free extra inputs that expose the degradation (see ``BlindSR_ST(highpass_input)``
and ``BlindSR_TA(residual_input)``); they change only the first conv's input channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kdsr_arch import LRELU_SLOPE, default_conv, prefers_channels_last


def _lrelu():
    return nn.LeakyReLU(LRELU_SLOPE, inplace=True)


class ResBlock(nn.Module):
    """conv3x3 -> LeakyReLU -> conv3x3, plus identity. No normalisation, no scaling.

    Args:
        n_feats (int): Channel number.
    """

    def __init__(self, n_feats):
        super().__init__()
        self.body = nn.Sequential(default_conv(n_feats, n_feats, 3), _lrelu(), default_conv(n_feats, n_feats, 3))

    def forward(self, x):
        return self.body(x) + x


RESIDUAL_GAIN = 10.0  # residuals of a few levels in 255 are ~0.01: scaled so their squares are not lost
EXTRA_INPUT_CHANNELS = 6  # what with_energy makes of a 3-channel residual


def with_energy(r: torch.Tensor) -> torch.Tensor:
    """``r`` (B, 3, h, w) -> (B, 6, h, w): the scaled residual and its square. The square is the
    point: noise and lost detail are second-order statistics that a conv stack started from a
    random init does not find under the photo's content in a short training, but reads at once
    when their energy is an input (``benchmarks/idr_learnability.py``)."""
    r = RESIDUAL_GAIN * r
    return torch.cat([r, r * r], dim=1)


def highpass(x: torch.Tensor) -> torch.Tensor:
    """``x`` minus its 3x3 box blur (reflect-padded at the border; replicated where a side is
    1 pixel, which reflection cannot pad): the image's finest detail."""
    mode = 'reflect' if min(x.shape[-2:]) > 1 else 'replicate'
    return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode=mode), 3, stride=1)


class KD_IDE(nn.Module):
    """Implicit degradation representation encoder.

    ``forward`` returns ``(idr, [idr_prime])``: ``idr_prime`` (B x 4C, after the MLP) is what
    knowledge distillation compares; ``idr`` (B x C, after ``compress``) guides the SR net.
    Everything before the global average pooling is local (``receptive_radius``), so
    ``features`` can run on overlapping tiles and ``represent`` on the mean of their sums.

    Args:
        n_feats (int): Channel number C. Default: 128.
        n_encoder_res (int): Number of residual blocks after the first conv. Default: 6.
        in_channels (int): Input channels: 3 for the student, 3 + 3*s*s for the teacher.
            Default: 3.
        highpass_input (bool): Append the high-pass of the first 3 input channels and its square
            (``with_energy(highpass(x))``) before the first conv, which then takes
            ``in_channels + 6`` channels. Default: False (the paper's encoder).
    """

    def __init__(self, n_feats=128, n_encoder_res=6, in_channels=3, highpass_input=False):
        super().__init__()
        c = n_feats
        self.highpass_input = highpass_input
        layers = [default_conv(in_channels + (EXTRA_INPUT_CHANNELS if highpass_input else 0), c, 3), _lrelu()]
        layers += [ResBlock(c) for _ in range(n_encoder_res)]
        layers += [
            default_conv(c, 2 * c, 3), _lrelu(),
            default_conv(2 * c, 2 * c, 3), _lrelu(),
            default_conv(2 * c, 4 * c, 3), _lrelu(),
            nn.AdaptiveAvgPool2d(1),
        ]  # yapf: disable
        self.E = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(4 * c, 4 * c), _lrelu(), nn.Linear(4 * c, 4 * c), _lrelu())
        self.compress = nn.Sequential(nn.Linear(4 * c, c), _lrelu())

    def kaiming_init(self) -> None:
        """Re-initialise every conv and linear layer Kaiming-normal for the LeakyReLU slope, with
        zero biases. PyTorch's default init shrinks the signal at each layer, so the pooled IDR
        starts as a near-constant bias (input-dependent part ~1e-3 of it) that short trainings
        never leave; after this init it varies with the input at unit scale."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, a=LRELU_SLOPE, nonlinearity='leaky_relu')
                nn.init.zeros_(m.bias)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context ``features`` uses on each side (one per 3x3 conv, one for the high-pass)."""
        convs = sum(1 for m in self.E if isinstance(m, nn.Conv2d)) + sum(2 for m in self.E if isinstance(m, ResBlock))
        return int(self.highpass_input) + convs

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        """The first conv's input: ``x``, plus the high-pass energies with ``highpass_input``."""
        return torch.cat([x, with_energy(highpass(x[:, :3]))], dim=1) if self.highpass_input else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's feature map before its global average pooling, (B, 4C, h, w)."""
        return self.E[:-1](self.lift(x))

    def represent(self, pooled: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Pooled features (B, 4C) -> ``(idr, [idr_prime])`` as ``forward`` returns them."""
        idr_prime = self.mlp(pooled)
        return self.compress(idr_prime), [idr_prime]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.lift(x)
        if prefers_channels_last(x, self.training):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.represent(self.E(x).flatten(1))
