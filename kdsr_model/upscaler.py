"""Upscale images with a KDSR student: the library behind ``kdsr-upscale``.

    from kdsr_model.upscaler import KDSRUpscaler
    up = KDSRUpscaler()                       # the built-in default model, on the best device
    out, mode = up.enhance(img)               # img: H x W (x 1/3/4) uint8 or uint16, BGR(A) as OpenCV reads

The IDR is computed once per image (on a downscaled copy when the image is large) and the
generator runs tile by tile with that same IDR, so tiles agree; with ``tile_pad`` at least
the receptive radius (the default), tiled output equals untiled output. Tiles go to the
device one at a time; an out-of-memory error is retried with smaller tiles.
"""
import math
import os

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from kdsr_arch.checkpoint import load_kdsr

DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights', 'kdsr_default_x4.pth')
IDR_MAX_PIXELS = 1024 * 1024  # the encoder sees at most this many LR pixels (area-downscaled beyond)
MIN_TILE = 32
CPU_TILE_BUDGET = 1.5 * 2**30  # bytes of activations per tile on CPU (keeps a 1080p x4 run near 2-3 GB)


def receptive_radius(n_sr_blocks):
    """LR pixels of context the generator uses on each side of an output pixel: head conv,
    two 3x3 convs per IDR-DCRB, body conv, and the upsampler/tail convs (under 2 LR px)."""
    return 2 * n_sr_blocks + 4


def pick_device(device='auto', gpu_id=None):
    """'auto' -> cuda (``gpu_id`` or 0) if available, else mps, else cpu."""
    if device == 'auto':
        if torch.cuda.is_available():
            device = 'cuda'
        elif getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available():
            device = 'mps'
        else:
            device = 'cpu'
    if device == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError('--device cuda: CUDA is not available on this machine; use --device cpu.')
        return torch.device('cuda', 0 if gpu_id is None else gpu_id)
    if device == 'mps' and not (getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available()):
        raise ValueError('--device mps: MPS is not available on this machine; use --device cpu.')
    return torch.device(device)


def available_memory(device):
    """Free bytes on ``device`` (CUDA: the allocator's view; CPU: MemAvailable, 4 GiB if unknown)."""
    if device.type == 'cuda':
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def _is_oom(err):
    return isinstance(err, torch.cuda.OutOfMemoryError) or 'out of memory' in str(err).lower() or \
        "can't allocate memory" in str(err).lower()


class KDSRUpscaler:
    """A KDSR student ready to upscale numpy images.

    Args:
        model_path (str | None): A KDSR student checkpoint (any format ``load_kdsr`` reads);
            None: the built-in default model.
        device (str | torch.device): 'auto', 'cpu', 'cuda', 'mps' or a torch.device.
        gpu_id (int | None): CUDA device index (0 is a GPU, not 'no GPU').
        half (bool | None): fp16 on CUDA. None: fp16 on CUDA, fp32 elsewhere (never fp16 on CPU).
        tile (int): LR tile size; 0 = whole image (tiles are used anyway after an OOM).
        tile_pad (int | None): LR pixels of overlap around each tile; None = the receptive radius.
        pre_pad (int): reflect padding added before and removed after upscaling.
    """

    def __init__(self, model_path=None, device='auto', gpu_id=None, half=None, tile=0, tile_pad=None, pre_pad=0):
        if model_path is None and not os.path.isfile(DEFAULT_MODEL):
            raise FileNotFoundError('no built-in model in this installation yet; give a KDSR student checkpoint '
                                    'with -m/--model (any BlindSR_ST file, e.g. the authors\' KDSRS-GAN.pth).')
        self.model_path = model_path or DEFAULT_MODEL
        self.device = device if isinstance(device, torch.device) else pick_device(device, gpu_id)
        net, spec = load_kdsr(self.model_path)
        if spec.is_teacher:
            raise ValueError(f'{self.model_path}: a KDSR teacher (BlindSR_TA) needs the HR image to run; '
                             'use a student checkpoint.')
        self.spec = spec
        self.scale = spec.scale
        self.half = (self.device.type == 'cuda') if half is None else (half and self.device.type == 'cuda')
        self.dtype = torch.float16 if self.half else torch.float32
        self.net = net.eval().to(self.device, self.dtype)
        self.tile = tile
        self.tile_pad = receptive_radius(spec.n_sr_blocks) if tile_pad is None else tile_pad
        self.pre_pad = pre_pad
        self.last_tile_retry = None

    def activation_bytes(self, h, w):
        """Rough peak activation memory of the generator on an h x w LR input: the upsampler's
        convolutions at 2x and 4x resolution dominate (about 32 C floats per LR pixel)."""
        return 32 * self.spec.n_feats * h * w * (2 if self.half else 4)

    def auto_tile(self, h, w):
        """0 if the whole image fits the memory budget, else the largest tile (multiple of 32) that does."""
        budget = 0.4 * available_memory(self.device)
        if self.device.type == 'cpu':
            budget = min(budget, CPU_TILE_BUDGET)
        if self.activation_bytes(h, w) <= budget:
            return 0
        tile = 32 * max(1, int(math.sqrt(budget / self.activation_bytes(1, 1))) // 32)
        while tile > MIN_TILE and self.activation_bytes(tile + 2 * self.tile_pad, tile + 2 * self.tile_pad) > budget:
            tile -= 32
        return max(tile, MIN_TILE)

    # ------------------------------------------------------------------ tensors

    @torch.inference_mode()
    def idr(self, lq):
        """IDR of a (1, 3, h, w) float tensor in [0, 1] (on any device), from a downscaled copy if large."""
        h, w = lq.shape[-2:]
        if h * w > IDR_MAX_PIXELS:
            f = math.sqrt(IDR_MAX_PIXELS / (h * w))
            lq = F.interpolate(lq, size=(max(1, int(h * f)), max(1, int(w * f))), mode='area')
        return self.net.encode(lq.to(self.device, self.dtype))[0]

    @torch.inference_mode()
    def upsample_tensor(self, lq, idr=None):
        """(1, 3, h, w) float CPU tensor in [0, 1] -> (1, 3, s*h, s*w) float CPU tensor."""
        if idr is None:
            idr = self.idr(lq)
        tile = self.tile or self.auto_tile(*lq.shape[-2:])
        while True:
            try:
                if tile and (lq.shape[-1] > tile or lq.shape[-2] > tile):
                    return self._tiled(lq, idr, tile)
                return self._run(lq, idr)
            except RuntimeError as err:
                if not _is_oom(err):
                    raise
                if self.device.type == 'cuda':
                    torch.cuda.empty_cache()
                tile = (tile // 2) if tile else 512
                if tile < MIN_TILE:
                    raise
                self.last_tile_retry = tile

    def _run(self, lq, idr):
        return self.net.upsample(lq.to(self.device, self.dtype), idr).float().cpu()

    def _tiled(self, lq, idr, tile):
        _, c, h, w = lq.shape
        s, pad = self.scale, self.tile_pad
        out = torch.empty(1, c, h * s, w * s)
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                py0, px0, py1, px1 = max(y0 - pad, 0), max(x0 - pad, 0), min(y1 + pad, h), min(x1 + pad, w)
                sr = self._run(lq[..., py0:py1, px0:px1], idr)
                out[..., y0 * s:y1 * s, x0 * s:x1 * s] = sr[..., (y0 - py0) * s:(y1 - py0) * s,
                                                            (x0 - px0) * s:(x1 - px0) * s]
        return out

    # ------------------------------------------------------------------ numpy images

    def _rgb_tensor(self, img, max_value):
        """H x W x 3 BGR array -> (1, 3, H, W) RGB float tensor in [0, 1], reflect pre-padded."""
        t = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1]).astype(np.float32) / max_value)
        t = t.permute(2, 0, 1).unsqueeze(0)
        if self.pre_pad:
            t = F.pad(t, (0, self.pre_pad, 0, self.pre_pad), mode='reflect')
        return t

    def _to_array(self, t, h, w, max_value, dtype):
        t = t[..., :h * self.scale, :w * self.scale]  # drop the pre-pad
        arr = t[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * max_value
        return np.ascontiguousarray(arr.round().astype(dtype))

    def enhance(self, img, outscale=None, alpha_upsampler='kdsr'):
        """Upscale one image as OpenCV reads it; returns ``(output, mode)`` like Real-ESRGAN's
        ``RealESRGANer.enhance`` (mode: 'L', 'RGB' or 'RGBA').

        Grayscale stays grayscale, 16-bit stays 16-bit (decided by the dtype, not the values),
        the alpha channel is upscaled separately: by the KDSR net (``'kdsr'``, also accepted as
        ``'realesrgan'``) or by bicubic interpolation (``'bicubic'``).
        """
        if img.dtype == np.uint16:
            max_value, dtype = 65535.0, np.uint16
        elif img.dtype == np.uint8:
            max_value, dtype = 255.0, np.uint8
        else:
            raise ValueError(f'unsupported pixel type {img.dtype} (8- or 16-bit images only)')
        if alpha_upsampler not in ('kdsr', 'realesrgan', 'bicubic'):
            raise ValueError(f"alpha_upsampler must be 'kdsr' or 'bicubic', got {alpha_upsampler!r}")
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        h, w = img.shape[:2]
        alpha = None
        if img.ndim == 2:
            mode, rgb = 'L', cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            mode, rgb, alpha = 'RGBA', img[:, :, :3], img[:, :, 3]
        elif img.shape[2] == 3:
            mode, rgb = 'RGB', img
        else:
            raise ValueError(f'unsupported channel count {img.shape[2]}')

        out = self._to_array(self.upsample_tensor(self._rgb_tensor(rgb, max_value)), h, w, max_value, dtype)
        if mode == 'L':
            out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        if alpha is not None:
            if alpha_upsampler == 'bicubic':
                up_alpha = cv2.resize(alpha, (w * self.scale, h * self.scale), interpolation=cv2.INTER_CUBIC)
            else:
                a3 = cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR)
                up_alpha = self._to_array(self.upsample_tensor(self._rgb_tensor(a3, max_value)), h, w, max_value,
                                          dtype)[:, :, 0]
            out = np.dstack([out, up_alpha])
        if outscale is not None and outscale != self.scale:
            size = (max(1, round(w * outscale)), max(1, round(h * outscale)))
            out = cv2.resize(out, size, interpolation=cv2.INTER_LANCZOS4)
        return out, mode
