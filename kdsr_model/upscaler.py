"""Upscale images with a KDSR student: the library behind ``kdsr-upscale``.

    from kdsr_model.upscaler import KDSRUpscaler
    up = KDSRUpscaler()                       # the built-in default model, on the best device
    out, mode = up.enhance(img)               # img: H x W (x 1/3/4) uint8 or uint16, BGR(A) as OpenCV reads

The IDR is computed once per image (on a downscaled copy when the image is large) and the
generator runs tile by tile with that same IDR, so tiles agree; with ``tile_pad`` at least
the receptive radius (the default), tiled output equals untiled output. Tiles go to the
device one at a time; an out-of-memory error is retried with smaller tiles.

Inside a tile the generator runs in two stages: the body (head, IDR-DCRBs, body conv: nearly
all of the receptive radius, little memory per pixel) on the whole tile, then the upsampler
and tail (most of the memory, a 2 LR-pixel radius) on sub-tiles of ``UPSAMPLE_CHUNK`` LR
pixels. Tiles can thus be large, so little work is spent on their overlaps.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from kdsr_arch.checkpoint import load_kdsr
from kdsr_arch.blindsr_arch import BlindSR_ST
from kdsr_arch.checkpoint import KDSRSpec

from .cpu_precision import SIDE as TIMING_SIDE
from .cpu_precision import choose_bf16, proc_field
from .cpu_precision import native_bf16  # noqa: F401  (public here before)
from .errors import OptionError

DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights', 'kdsr_default_x4.pth')
IDR_MAX_PIXELS = 1024 * 1024  # the encoder sees at most this many LR pixels (area-downscaled beyond)
MIN_TILE = 32
CPU_TILE_BUDGET = 1.5 * 2**30  # bytes of activations per tile on CPU (keeps a 1080p x4 run near 2-3 GB)
UPSAMPLE_CHUNK = 128  # LR side of the sub-tiles the upsampler + tail run on
EDGE_PAD = 4  # LR pixels of reflect padding on every side (the nets' zero padding tints the borders)
COLOR_FIX_SIGMA = 4.0  # LR pixels: the Gaussian whose low-pass of the output is set to the input's


def edge_padded(generate: Callable[[torch.Tensor], torch.Tensor], lq: torch.Tensor, scale: int) -> torch.Tensor:
    """``generate`` (an LR -> x``scale`` SR function) run on ``lq`` reflect-padded by
    :data:`EDGE_PAD` (at most one less than each side) on every side, its output cropped back
    to ``scale`` times ``lq``'s size."""
    h, w = lq.shape[-2:]
    e = min(EDGE_PAD, h - 1, w - 1)  # reflection needs pad < side
    if e <= 0:
        return generate(lq)
    return generate(F.pad(lq, (e, e, e, e), mode='reflect'))[..., e * scale:(e + h) * scale, e * scale:(e + w) * scale]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian low-pass of a (B, C, H, W) tensor, ``sigma`` in pixels, reflected edges."""
    radius = min(math.ceil(3 * sigma), x.shape[-2] - 1, x.shape[-1] - 1)
    if radius < 1:
        return x.clone()
    r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-r**2 / (2 * sigma**2))
    k = (k / k.sum()).repeat(x.shape[1], 1, 1, 1)  # (C, 1, 1, K)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode='reflect'), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode='reflect'), k.transpose(2, 3), groups=x.shape[1])


def keep_input_colors(out: torch.Tensor, lq: torch.Tensor, scale: int, sigma: float = COLOR_FIX_SIGMA,
                      rows: int = 64) -> torch.Tensor:
    """Set the coarse colour of ``out`` (1, C, s*h, s*w) to that of its input ``lq`` (1, C, h, w),
    in place: the difference of their Gaussian low-passes (``sigma`` LR pixels; ``out``
    area-downscaled) is upsampled bilinearly and added, ``rows`` LR rows at a time (no full-size
    temporary). Detail finer than the Gaussian is the net's own. The nets shift colours by up to
    a few levels on smooth areas, by how degraded their IDR says the input is."""
    diff = gaussian_blur(lq.float(), sigma) - gaussian_blur(F.avg_pool2d(out, scale), sigma)
    h = diff.shape[-2]
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        m0, m1 = max(0, r0 - 1), min(h, r1 + 1)  # one row beyond: bilinear reads the neighbours
        up = F.interpolate(diff[..., m0:m1, :], scale_factor=scale, mode='bilinear', align_corners=False)
        out[..., r0 * scale:r1 * scale, :] += up[..., (r0 - m0) * scale:(r1 - m0) * scale, :]
    return out


def device_option(device: str | torch.device) -> torch.device:
    """A ``--device`` value as a torch.device (one given as is); :class:`OptionError` when it
    is not available here."""
    if isinstance(device, torch.device):
        return device
    try:
        return pick_device(device)
    except ValueError as err:
        raise OptionError(str(err)) from None


def pick_device(device: str | torch.device = 'auto', gpu_id: int | None = None) -> torch.device:
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


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device`` (CUDA: the allocator's view; CPU: MemAvailable, 4 GiB if unknown)."""
    if device.type == 'cuda':
        return torch.cuda.mem_get_info(device)[0]
    kib = proc_field('/proc/meminfo', 'MemAvailable:')
    return int(kib.split()[0]) * 1024 if kib else 4 * 2**30


def _tiles(h, w, tile, pad):
    """Yield ``(y0, x0, y1, x1, py0, px0, py1, px1)``: each ``tile``-sized cell of an h x w
    image and that cell grown by ``pad`` on each side, clipped to the image."""
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            yield y0, x0, y1, x1, max(y0 - pad, 0), max(x0 - pad, 0), min(y1 + pad, h), min(x1 + pad, w)


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
        bf16 (bool | None): on CPU, run the generator under bfloat16 autocast (convolutions in
            bf16). None: by measurement, where the CPU has native bf16 (AVX512-BF16/AMX): a
            short timing of both precisions for this model size, cached per CPU
            (``kdsr_model.cpu_precision``), so the default is never slower than fp32; fp32 on
            other CPUs. With the built-in model on real photos, bf16 output is within 2/255 of
            fp32 and PSNR-Y is unchanged (docs/BENCHMARKS.md). Default: None.
        tile (int): LR tile size; 0 = whole image (tiles are used anyway after an OOM).
        tile_pad (int | None): LR pixels of overlap around each tile; None = the receptive radius.
        pre_pad (int): reflect padding added before and removed after upscaling (at most one pixel
            less than the image's shorter side).
        loaded (tuple | None): ``load_kdsr(model_path)``'s ``(net, spec)`` when the caller has
            already read the file (it is not read again).
        color_fix (bool): keep the input's coarse colour (:func:`keep_input_colors`). Default: True.
    """

    def __init__(self, model_path: str | None = None, device: str | torch.device = 'auto', gpu_id: int | None = None,
                 half: bool | None = None, tile: int = 0, tile_pad: int | None = None, pre_pad: int = 0,
                 bf16: bool | None = None, loaded: tuple[BlindSR_ST, KDSRSpec] | None = None,
                 color_fix: bool = True) -> None:
        if model_path is None and not os.path.isfile(DEFAULT_MODEL):
            raise FileNotFoundError('no built-in model in this installation yet; give a KDSR student checkpoint '
                                    'with -m/--model (any BlindSR_ST file, e.g. the authors\' KDSRS-GAN.pth).')
        self.model_path = model_path or DEFAULT_MODEL
        self.device = device if isinstance(device, torch.device) else pick_device(device, gpu_id)
        net, spec = loaded or load_kdsr(self.model_path)
        if spec.is_teacher:
            raise ValueError(f'{self.model_path}: a KDSR teacher (BlindSR_TA) needs the HR image to run; '
                             'use a student checkpoint.')
        self.spec = spec
        self.scale = spec.scale
        self.half = (self.device.type == 'cuda') if half is None else (half and self.device.type == 'cuda')
        self.dtype = torch.float16 if self.half else torch.float32
        self.net = net.eval().to(self.device, self.dtype)
        self.bf16 = False
        self.precision_note = None  # one line when the CPU precision was just measured
        # channels_last: oneDNN convolutions skip their NCHW reorders (measured ~8% faster on CPU,
        # outputs equal to 1e-6); left off elsewhere (not measured there).
        self.memory_format = torch.channels_last if self.device.type == 'cpu' else torch.contiguous_format
        self.net = self.net.to(memory_format=self.memory_format)
        self.tile = tile
        self.tile_pad = self.net.G.receptive_radius if tile_pad is None else tile_pad
        self.pre_pad = pre_pad
        self.color_fix = color_fix
        self.last_tile_retry = None
        if self.device.type == 'cpu':
            if bf16 is None:
                self.bf16, self.precision_note = choose_bf16(spec, self._timing_run())
            else:
                self.bf16 = bool(bf16)

    def activation_bytes(self, h: int, w: int) -> int:
        """Rough peak activation memory of the generator on an h x w LR input: 5 C floats per
        LR pixel in the body (long skip, block input, two block temporaries, margin) plus the
        upsampler's 32 C floats per LR pixel of one sub-tile (its 2x and 4x convolutions)."""
        edge = UPSAMPLE_CHUNK + 2 * self.net.G.tail_radius
        chunk = min(h, edge) * min(w, edge)
        return (5 * h * w + 32 * chunk) * self.spec.n_feats * (2 if self.half else 4)

    def encoder_bytes(self, h: int, w: int) -> int:
        """Rough peak activation memory of the encoder on an h x w LR input: its widest conv
        reads 2C and writes 4C floats per pixel, plus one C of margin."""
        return 7 * h * w * self.spec.n_feats * (2 if self.half else 4)

    def _budget(self):
        budget = 0.4 * available_memory(self.device)
        return min(budget, CPU_TILE_BUDGET) if self.device.type == 'cpu' else budget

    def _fit_tile(self, h, w, pad, nbytes):
        """0 if ``nbytes(h, w)`` fits the budget, else the largest tile (multiple of 32) whose
        padded size does."""
        budget = self._budget()
        if nbytes(h, w) <= budget:
            return 0
        tile = 32 * max(1, math.ceil(max(h, w) / 32))  # walk down: the estimate is not a pure area law
        while tile > MIN_TILE and nbytes(tile + 2 * pad, tile + 2 * pad) > budget:
            tile -= 32
        return max(tile, MIN_TILE)

    def auto_tile(self, h: int, w: int) -> int:
        """0 if the whole image fits the memory budget, else the largest tile (multiple of 32) that does."""
        return self._fit_tile(h, w, self.tile_pad, self.activation_bytes)

    # ------------------------------------------------------------------ tensors

    @torch.inference_mode()
    def idr(self, lq: torch.Tensor, tile: int | None = None) -> torch.Tensor:
        """IDR of a (1, 3, h, w) float tensor in [0, 1] (on any device), from a downscaled copy if large.

        The encoder is local up to its global average pooling, so when its activations would
        exceed the memory budget it runs on tiles padded by its receptive radius and the IDR
        comes from the mean of the tiles' sums: the same IDR (up to summation order) in bounded
        memory. ``tile``: None picks one from the budget, 0 runs whole.
        """
        h, w = lq.shape[-2:]
        if h * w > IDR_MAX_PIXELS:
            f = math.sqrt(IDR_MAX_PIXELS / (h * w))
            lq = F.interpolate(lq, size=(max(1, int(h * f)), max(1, int(w * f))), mode='area')
            h, w = lq.shape[-2:]
        lq = lq.to(self.device, self.dtype)
        enc = self.net.encoder
        pad = enc.receptive_radius
        if tile is None:
            tile = self._fit_tile(h, w, pad, self.encoder_bytes)
        if not tile or (h <= tile and w <= tile):
            return self.net.encode(lq)[0]
        total = 0
        for y0, x0, y1, x1, py0, px0, py1, px1 in _tiles(h, w, tile, pad):
            feats = enc.features(lq[..., py0:py1, px0:px1])
            # float32 sums (pairwise, no copy of the map); sum(dtype=float64) would copy it as float64
            total = total + feats[..., y0 - py0:y1 - py0, x0 - px0:x1 - px0].sum(dim=(-2, -1)).double()
            del feats  # before the next tile's features, not after them
        return enc.represent((total / (h * w)).to(self.dtype))[0]

    @torch.inference_mode()
    def upsample_tensor(self, lq: torch.Tensor, idr: torch.Tensor | None = None) -> torch.Tensor:
        """(1, 3, h, w) float CPU tensor in [0, 1] -> (1, 3, s*h, s*w) float CPU tensor.

        The image is reflect-padded by :data:`EDGE_PAD` pixels on every side and the output
        cropped back: the nets' zero padding would otherwise tint the outermost output pixels
        (up to 50 levels in the corners of a flat image; under 2 with the pad). With ``color_fix``
        the output keeps the input's coarse colour (:func:`keep_input_colors`)."""
        if idr is None:
            idr = self.idr(lq)
        out = edge_padded(lambda x: self._upsample(x, idr, 2 * EDGE_PAD), lq, self.scale)
        return keep_input_colors(out, lq.cpu(), self.scale) if self.color_fix else out

    def _upsample(self, lq, idr, margin=0):
        """The generator on ``lq``, tiled when it is larger than the tile plus ``margin`` (the
        edge padding: an image of the tile's size stays one tile)."""
        tile = self.tile or self.auto_tile(*lq.shape[-2:])
        while True:
            try:
                if tile and (lq.shape[-1] > tile + margin or lq.shape[-2] > tile + margin):
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

    def _timing_run(self):
        """``run(bf16)``: the generator once on a fixed input in the given precision, for
        :func:`kdsr_model.cpu_precision.choose_bf16`."""
        fixed = {}  # made at the first call: nothing runs when the verdict is cached

        @torch.inference_mode()
        def run(bf16):
            if not fixed:
                fixed['lq'] = torch.rand(1, 3, TIMING_SIDE, TIMING_SIDE, generator=torch.Generator().manual_seed(0))
                fixed['idr'] = self.idr(fixed['lq'], tile=0)
            self._run(fixed['lq'], fixed['idr'], bf16)

        return run

    def _run(self, lq, idr, bf16=None):
        lq = lq.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=self.bf16 if bf16 is None else bf16):
            return self._generate(lq, idr).float().cpu()

    def _generate(self, lq, idr):
        """``net.upsample(lq, idr)``, the upsampler and tail run on sub-tiles (equal output)."""
        g = self.net.G
        h, w = lq.shape[-2:]
        if h <= UPSAMPLE_CHUNK and w <= UPSAMPLE_CHUNK:
            return self.net.upsample(lq, idr)
        res = g.features(lq, idr)
        s, pad = self.scale, g.tail_radius
        out = None
        for y0, x0, y1, x1, py0, px0, py1, px1 in _tiles(h, w, UPSAMPLE_CHUNK, pad):
            sr = g.reconstruct(res[..., py0:py1, px0:px1])
            if out is None:
                out = sr.new_empty(1, sr.shape[1], h * s, w * s)
            out[..., y0 * s:y1 * s, x0 * s:x1 * s] = sr[..., (y0 - py0) * s:(y1 - py0) * s,
                                                        (x0 - px0) * s:(x1 - px0) * s]
        return out

    def _tiled(self, lq, idr, tile):
        _, c, h, w = lq.shape
        s, pad = self.scale, self.tile_pad
        out = torch.empty(1, c, h * s, w * s)
        for y0, x0, y1, x1, py0, px0, py1, px1 in _tiles(h, w, tile, pad):
            sr = self._run(lq[..., py0:py1, px0:px1], idr)
            out[..., y0 * s:y1 * s, x0 * s:x1 * s] = sr[..., (y0 - py0) * s:(y1 - py0) * s,
                                                        (x0 - px0) * s:(x1 - px0) * s]
            del sr
        return out

    # ------------------------------------------------------------------ numpy images

    def _rgb_tensor(self, img, max_value):
        """H x W x 3 BGR array -> (1, 3, H, W) RGB float tensor in [0, 1], reflect pre-padded."""
        t = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1]).astype(np.float32) / max_value)
        t = t.permute(2, 0, 1).unsqueeze(0)
        pad = min(self.pre_pad, t.shape[-2] - 1, t.shape[-1] - 1)  # reflection needs pad < side
        if pad > 0:
            t = F.pad(t, (0, pad, 0, pad), mode='reflect')
        return t

    @torch.inference_mode()
    def _to_array(self, t, h, w, max_value, dtype):
        """In place on ``t`` (it is ours): no full-size float temporaries (a 1080p x4 output
        is 400 MB as floats)."""
        t = t[0, :, :h * self.scale, :w * self.scale]  # drop the pre-pad
        t.clamp_(0, 1).mul_(max_value).round_()
        q = t.to(torch.int32 if dtype == np.uint16 else torch.uint8)
        del t
        return np.ascontiguousarray(q.permute(1, 2, 0).numpy()[:, :, ::-1]).astype(dtype, copy=False)

    @staticmethod
    def _max_value(img):
        if img.dtype == np.uint16:
            return 65535.0, np.uint16
        if img.dtype == np.uint8:
            return 255.0, np.uint8
        raise ValueError(f'unsupported pixel type {img.dtype} (8- or 16-bit images only)')

    def image_idr(self, img: np.ndarray) -> torch.Tensor:
        """The IDR of one BGR (or gray) 8/16-bit image as OpenCV reads it, alpha ignored: pass it
        to :meth:`enhance` as ``idr`` to upscale other images (e.g. every frame of a video shot)
        under the same degradation estimate. Several images' IDRs can be averaged."""
        max_value, _ = self._max_value(img)
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[:, :, :3]
        return self.idr(self._rgb_tensor(rgb, max_value))

    def enhance(self, img: np.ndarray, outscale: float | None = None, alpha_upsampler: str = 'kdsr',
                idr: torch.Tensor | None = None) -> tuple[np.ndarray, str]:
        """Upscale one image as OpenCV reads it; returns ``(output, mode)`` like Real-ESRGAN's
        ``RealESRGANer.enhance`` (mode: 'L', 'RGB' or 'RGBA').

        Grayscale stays grayscale, 16-bit stays 16-bit (decided by the dtype, not the values),
        the alpha channel is upscaled separately: by the KDSR net (``'kdsr'``, also accepted as
        ``'realesrgan'``) or by bicubic interpolation (``'bicubic'``). ``idr``: a degradation
        estimate from :meth:`image_idr` to use for the colour channels instead of this image's own.
        """
        max_value, dtype = self._max_value(img)
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

        out = self._to_array(self.upsample_tensor(self._rgb_tensor(rgb, max_value), idr), h, w, max_value, dtype)
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
