"""KDSR teacher (``BlindSR_TA``) and student (``BlindSR_ST``), registered in BasicSR's ARCH_REGISTRY.

Both are ``G`` (the SR generator) guided by a KD-IDE encoder. In training mode ``forward``
returns ``(sr, [idr_prime])`` as the authors' nets do, in eval mode only ``sr``. For tiled
inference, ``encode`` computes the IDR once and ``upsample`` runs ``G`` with a given IDR.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from .kd_ide_arch import EXTRA_INPUT_CHANNELS, KD_IDE, with_energy
from .kdsr_arch import KDSR, check_scale


def teacher_in_channels(scale, residual_input=False):
    """Channels of the teacher encoder input: LR (3) + pixel-unshuffled HR (3 * scale**2)
    (+ 6 with ``residual_input``)."""
    return 3 + 3 * scale * scale + (EXTRA_INPUT_CHANNELS if residual_input else 0)


def clean_downscale(hr: torch.Tensor, size) -> torch.Tensor:
    """``hr`` downscaled to ``size`` (h, w) by antialiased bicubic, in fp32: the LR a clean
    degradation would give, against which the residual of the actual LR is taken."""
    return F.interpolate(hr.float(), size=tuple(size), mode='bicubic', align_corners=False, antialias=True)


class _BlindSR(nn.Module):
    """Generator ``G`` plus a KD-IDE encoder stored under ``ENCODER`` (``E_st`` or ``E``)."""
    ENCODER = None

    def __init__(self, n_feats, n_encoder_res, scale, n_sr_blocks, in_channels, highpass_input=False):
        super().__init__()
        self.scale = check_scale(scale)
        self.G = KDSR(n_feats=n_feats, scale=self.scale, n_sr_blocks=n_sr_blocks)
        setattr(self, self.ENCODER, KD_IDE(n_feats=n_feats, n_encoder_res=n_encoder_res,
                                           in_channels=in_channels(self.scale), highpass_input=highpass_input))

    @property
    def encoder(self) -> KD_IDE:
        """The KD-IDE encoder (``E_st`` or ``E``)."""
        return getattr(self, self.ENCODER)

    def upsample(self, lq: torch.Tensor, idr: torch.Tensor) -> torch.Tensor:
        """Run the generator on ``lq`` with a given IDR (B, C)."""
        return self.G(lq, idr)


@ARCH_REGISTRY.register()
class BlindSR_ST(_BlindSR):
    """KDSR student: the encoder ``E_st`` sees the LR image only.

    Args:
        n_feats (int): Channel number of ``G`` and of the encoder. Default: 128.
        n_encoder_res (int): Residual blocks in the encoder. Default: 6.
        scale (int): Upsampling factor (2, 3, 4 or 8). Default: 4.
        n_sr_blocks (int): IDR-DCRB blocks in ``G``. Default: 42.
        highpass_input (bool): Also feed the encoder the LR's high-pass and its square (6 more
            input channels of its first conv), the cue to noise and sharpness that a student
            learns from a ``residual_input`` teacher. Default: False (the paper's student).
    """
    ENCODER = 'E_st'

    def __init__(self, n_feats=128, n_encoder_res=6, scale=4, n_sr_blocks=42, highpass_input=False):
        super().__init__(n_feats, n_encoder_res, scale, n_sr_blocks, in_channels=lambda s: 3,
                         highpass_input=highpass_input)

    def encode(self, lq: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """LR (B, 3, h, w) in [0, 1] -> (idr (B, C), [idr_prime (B, 4C)])."""
        return self.E_st(lq)

    def forward(self, lq: torch.Tensor):
        idr, idr_prime = self.encode(lq)
        sr = self.G(lq, idr)
        return (sr, idr_prime) if self.training else sr


@ARCH_REGISTRY.register()
class BlindSR_TA(_BlindSR):
    """KDSR teacher: the encoder ``E`` sees the LR image and the pixel-unshuffled HR image.

    The encoder takes 3 + 3*scale**2 channels, so every supported scale works (the authors'
    code hard-codes 51 channels, i.e. x4 only). With ``residual_input`` it takes 6 more: the
    residual r = LR - antialiased bicubic downscale of HR, and r**2 (scaled), i.e. what the
    degradation did beyond a clean downscale, which the paper's input leaves the encoder to
    find under the photo's content.

    Args:
        n_feats (int): Channel number of ``G`` and of the encoder. Default: 128.
        n_encoder_res (int): Residual blocks in the encoder. Default: 6.
        scale (int): Upsampling factor (2, 3, 4 or 8). Default: 4.
        n_sr_blocks (int): IDR-DCRB blocks in ``G``. Default: 42.
        residual_input (bool): Append r and r**2 to the encoder input (above). Default: False
            (the paper's teacher).
    """
    ENCODER = 'E'

    def __init__(self, n_feats=128, n_encoder_res=6, scale=4, n_sr_blocks=42, residual_input=False):
        super().__init__(n_feats, n_encoder_res, scale, n_sr_blocks,
                         in_channels=lambda s: teacher_in_channels(s, residual_input))
        self.residual_input = residual_input
        self.pixel_unshuffle = nn.PixelUnshuffle(self.scale)

    def encoder_input(self, lq: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Concatenate LR with the pixel-unshuffled HR (LR channels first), then, with
        ``residual_input``, the residual's energies."""
        expected = (lq.shape[-2] * self.scale, lq.shape[-1] * self.scale)
        if tuple(gt.shape[-2:]) != expected:
            raise ValueError(f'BlindSR_TA x{self.scale}: GT must be {expected[0]}x{expected[1]} for an LR of '
                             f'{lq.shape[-2]}x{lq.shape[-1]}, got {gt.shape[-2]}x{gt.shape[-1]}.')
        gt = gt.to(lq.dtype)
        parts = [lq, self.pixel_unshuffle(gt)]
        if self.residual_input:
            parts.append(with_energy(lq - clean_downscale(gt, lq.shape[-2:]).to(lq.dtype)))
        return torch.cat(parts, dim=1)

    def encode(self, lq: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(LR, HR) -> (idr (B, C), [idr_prime (B, 4C)])."""
        return self.E(self.encoder_input(lq, gt))

    def forward(self, lq: torch.Tensor, gt: torch.Tensor):
        idr, idr_prime = self.encode(lq, gt)
        sr = self.G(lq, idr)
        return (sr, idr_prime) if self.training else sr
