"""The rows of an evaluation: bicubic, KDSR students (blind) and KDSR teachers (HR oracles)."""
import os

import numpy as np
import torch
from basicsr.utils.matlab_functions import imresize

from kdsr_arch.checkpoint import load_kdsr

from ..errors import OptionError
from ..upscaler import KDSRUpscaler, edge_padded

TEACHER_NOTE = 'teacher, HR oracle'


def bicubic_upsample(lr, scale):
    """MATLAB bicubic upsampling (BasicSR's ``imresize``) of an 8-bit image, rounded to 8 bits."""
    out = imresize(lr.astype(np.float32) / 255., scale)
    return np.clip(out * 255., 0, 255).round().astype(np.uint8)


def to_tensor(img, device):
    """H x W x 3 BGR uint8 -> (1, 3, H, W) RGB float32 in [0, 1] on ``device``."""
    rgb = np.ascontiguousarray(img[:, :, ::-1]).astype(np.float32) / 255.
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device)


def to_image(t):
    """(1, 3, H, W) RGB float tensor in [0, 1] -> H x W x 3 BGR uint8."""
    arr = t[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()[:, :, ::-1] * 255.
    return np.ascontiguousarray(arr.round().astype(np.uint8))


class Method:
    """One row of the table: bicubic, a KDSR student or a KDSR teacher (oracle).

    Args:
        path (str | None): A KDSR checkpoint (any format ``load_kdsr`` reads); None: bicubic.
        device (torch.device): Where the net runs.
        tile (int): LR tile size for students (0: whole image unless it does not fit).
    """

    def __init__(self, path=None, device=None, tile=0):
        self.path = path
        if path is None:
            self.name, self.kind, self.scale, self.spec = 'Bicubic', 'bicubic', None, None
            return
        self.name = os.path.splitext(os.path.basename(path))[0]
        net, self.spec = load_kdsr(path)
        self.scale = self.spec.scale
        if self.spec.is_teacher:
            self.kind, self.device = 'teacher', device
            self.net = net.eval().to(device)
        else:
            self.kind = 'student'
            self.upscaler = KDSRUpscaler(path, device=device, half=False, bf16=False, tile=tile,
                                         loaded=(net, self.spec))

    @property
    def label(self):
        """The row label (teachers are marked as oracles)."""
        return f'{self.name} ({TEACHER_NOTE})' if self.kind == 'teacher' else self.name

    def info(self):
        return {
            'name': self.name,
            'label': self.label,
            'kind': self.kind,
            'path': self.path,
            'oracle_hr': self.kind == 'teacher',
            'arch': self.spec.options() if self.spec else None
        }

    @torch.inference_mode()
    def __call__(self, lr, gt, scale):
        """Super-resolve an 8-bit BGR LR image; ``gt`` (the HR) is used by teachers only."""
        if self.kind == 'bicubic':
            return bicubic_upsample(lr, scale)
        if self.kind == 'student':
            return self.upscaler.enhance(lr)[0]
        lq = to_tensor(lr, self.device)
        idr = self.net.encode(lq, to_tensor(gt, self.device))[0]  # from the HR, as in training
        return to_image(edge_padded(lambda x: self.net.upsample(x, idr), lq, scale))


def unique_name(name, taken):
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f'{name}-{i}', i + 1
    taken.add(candidate)
    return candidate


def load_methods(models, bicubic=True, device='cpu', tile=0):
    """Bicubic (first, as in the paper) and one :class:`Method` per checkpoint; OptionError naming a bad file."""
    methods = [Method()] if bicubic else []
    for path in models:
        try:
            methods.append(Method(path, device, tile))
        except (FileNotFoundError, ValueError, KeyError) as err:
            raise OptionError(f'-m {err.args[0] if err.args else err}') from None
    taken = set()
    for m in methods:
        m.name = unique_name(m.name, taken)
    return methods
