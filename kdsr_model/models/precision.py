"""Mixed precision for training: the nets' forward passes under ``train:autocast``.

``train:autocast: bf16`` runs the generator's and the teacher's forward passes under bfloat16
autocast (CPU or CUDA): convolutions in bf16, everything autocast keeps in fp32 stays so. The
outputs are cast back to fp32 before any loss, so the L1, perceptual and GAN losses and the
KD softmax are computed in fp32; degradation synthesis, validation and the saved weights are
fp32 as well. On a CPU with AVX512-BF16 or AMX a training step runs about 1.8x faster
(``python benchmarks/train_precision.py`` measures it on yours); without native bf16 it is
slower. ``~`` (the default) trains in fp32.
"""
import contextlib

import torch

from ..errors import OptionError

AUTOCAST_DTYPES = {'bf16': torch.bfloat16}


def _to_fp32(value):
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_fp32(v) for v in value)
    return value


class AutocastMixin:
    """``self.forward_amp(fn, *args)``: ``fn(*args)`` under ``train:autocast``, outputs in fp32."""

    def autocast_dtype(self):
        if not self.is_train:
            return None
        name = self.opt['train'].get('autocast')
        if name is None:
            return None
        if name not in AUTOCAST_DTYPES:
            raise OptionError(f'train:autocast: {name!r} is not supported; use bf16, or ~ for fp32.')
        return AUTOCAST_DTYPES[name]

    def forward_amp(self, fn, *args):
        dtype = self.autocast_dtype()
        if dtype is None:
            return fn(*args)
        context = torch.autocast(self.device.type, dtype=dtype) if self.device.type in ('cpu', 'cuda') \
            else contextlib.nullcontext()
        with context:
            out = fn(*args)
        return _to_fp32(out)
