"""Flicker of video upscaling: one IDR per frame, one per shot, and bicubic; and video speed.

    python benchmarks/video_flicker.py [--model PATH] [--frames 24] [--lr 72x54] [--speed-frames 6]

Two clips are made from a photo of ``datasets/samples/train``: the photo blurred once
(Gaussian, sigma ``--blur``) and area-downscaled x4, then, per frame, fresh Gaussian noise
(sigma ``--noise``):

- *static*: the same LR crop in every frame (only the noise changes);
- *pan*: the LR crop moves one LR pixel to the right per frame (four output pixels).

Each clip is written losslessly (FFV1) and upscaled by :func:`kdsr_model.video.upscale_video`
into lossless H.264 (CRF 0): per-frame IDR, per-shot IDR, and bicubic through the same
pipeline. The table gives, on the output (8 pixels of border left out), the mean absolute
difference of consecutive frames (0-255; on the pan, frame t+1 shifted back by the pan) and
the mean absolute change of the frames' mean brightness (global flicker). Lower is steadier.
The noise itself changes every frame, so no method reaches 0.

Then the speed of a 320x180 -> 1280x720 H.264 clip: frames per second, and the share of the
time in analysis (shot detection, IDRs), decoding, upscaling and encoding.
"""
import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

from kdsr_model.upscaler import KDSRUpscaler
from kdsr_model.video import require_av, upscale_video

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'datasets', 'samples', 'train')
BORDER = 8  # output pixels left out on each side


class Bicubic:
    """The upscaler interface of :func:`upscale_video` around OpenCV's bicubic resize."""

    scale = 4

    def image_idr(self, img):
        return torch.zeros(1)

    def enhance(self, img, idr=None):
        h, w = img.shape[:2]
        return cv2.resize(img, (w * self.scale, h * self.scale), interpolation=cv2.INTER_CUBIC), 'RGB'


def degraded_photo(name, blur, scale=4):
    """The photo blurred by a Gaussian of sigma ``blur`` (HR pixels) and area-downscaled by ``scale``."""
    img = cv2.imread(os.path.join(SAMPLES, name), cv2.IMREAD_COLOR)
    img = cv2.GaussianBlur(img, (0, 0), blur)
    h, w = img.shape[:2]
    return cv2.resize(img, (w // scale, h // scale), interpolation=cv2.INTER_AREA).astype(np.float32)


def clip_frames(lr, size, frames, noise, pan, seed=0):
    """``frames`` LR crops of ``size`` (w, h) from ``lr``, each with fresh noise; moving
    ``pan`` LR pixels right per frame."""
    rng = np.random.default_rng(seed)
    w, h = size
    y0 = (lr.shape[0] - h) // 2
    x0 = (lr.shape[1] - w - pan * (frames - 1)) // 2
    if x0 < 0 or y0 < 0:
        sys.exit(f'--lr {w}x{h} with --frames {frames}: the pan does not fit the photo; ask for less')
    for t in range(frames):
        crop = lr[y0:y0 + h, x0 + pan * t:x0 + pan * t + w]
        yield np.clip(crop + rng.normal(0, noise, crop.shape), 0, 255).round().astype(np.uint8)


def write_video(path, frames, fps=24, codec='ffv1', pix_fmt='bgr0', crf=None, audio_seconds=0.0):
    """Frames (BGR uint8) into a video file; with an AAC sine of ``audio_seconds`` if > 0."""
    av = require_av()
    with av.open(path, 'w') as out:
        stream = None
        for t, img in enumerate(frames):
            if stream is None:
                stream = out.add_stream(codec, rate=fps, options={'crf': str(crf)} if crf is not None else {})
                stream.height, stream.width = img.shape[:2]
                stream.pix_fmt = pix_fmt
                sound = out.add_stream('aac', rate=48000) if audio_seconds > 0 else None
            frame = av.VideoFrame.from_ndarray(img, format='bgr24')
            frame.pts = t
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if sound is not None:
            n = int(48000 * audio_seconds)
            signal = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 48000)).astype(np.float32)
            for k in range(0, n, 1024):
                frame = av.AudioFrame.from_ndarray(signal[None, k:k + 1024], format='fltp', layout='mono')
                frame.sample_rate, frame.pts = 48000, k
                out.mux(sound.encode(frame))
            out.mux(sound.encode())


def read_frames(path):
    av = require_av()
    with av.open(path) as c:
        for frame in c.decode(video=0):
            yield frame.to_ndarray(format='bgr24').astype(np.float32)


def flicker(path, shift):
    """``(mean |frame t+1 - frame t|, mean |change of the frame mean|)``, frame t+1 shifted
    back by ``shift`` output pixels (the pan), borders left out."""
    diffs, means, prev = [], [], None
    for img in read_frames(path):
        if prev is not None:
            a = prev[BORDER:-BORDER, BORDER + shift:-BORDER]
            b = img[BORDER:-BORDER, BORDER:-BORDER - shift]
            diffs.append(np.abs(b - a).mean())
            means.append(abs(b.mean() - a.mean()))
        prev = img
    return float(np.mean(diffs)), float(np.mean(means))


def idr_sensitivity(up, frames):
    """``(spread, change)``: the mean distance of the frames' own IDRs to their mean, relative
    to its norm, and the mean absolute change (0-255) of a frame's output when upscaled under
    the mean IDR instead of its own: how much per-frame IDRs can flicker with this model."""
    idrs = [up.image_idr(f) for f in frames]
    mean = torch.stack(idrs).mean(0)
    spread = float(torch.stack([(i - mean).norm() for i in idrs]).mean() / mean.norm())
    change = np.mean([np.abs(up.enhance(f, idr=i)[0].astype(np.float32) - up.enhance(f, idr=mean)[0]).mean()
                      for f, i in zip(frames, idrs)])
    return spread, float(change)


def flicker_rows(up, args, tmp):
    lr = degraded_photo(args.photo, args.blur)
    size = tuple(int(v) for v in args.lr.split('x'))
    methods = [('per-frame IDR', up, 'per-frame'), ('per-shot IDR', up, 'per-shot'), ('bicubic', Bicubic(), 'per-video')]
    rows = []
    for clip, pan in (('static', 0), ('pan', 1)):
        src = os.path.join(tmp, f'{clip}.mkv')
        write_video(src, clip_frames(lr, size, args.frames, args.noise, pan))
        for label, upscaler, mode in methods:
            out = os.path.join(tmp, f'{clip}_{mode}.mp4')
            result = upscale_video(upscaler, src, out, idr_mode=mode, crf=0)
            mad, mean_change = flicker(out, pan * upscaler.scale)
            shots = len(result.shots) if mode == 'per-shot' else ''
            rows.append((clip, label, mad, mean_change, shots))
    return rows


def speed_row(up, args, tmp):
    """(fps, shares) of a 320x180 -> 1280x720 H.264 clip with audio."""
    photo = cv2.imread(os.path.join(SAMPLES, args.photo), cv2.IMREAD_COLOR)
    frame = cv2.resize(photo[88:313], (320, 180), interpolation=cv2.INTER_AREA)  # a 16:9 band of the photo
    frames = (np.roll(frame, t, axis=1) for t in range(args.speed_frames))
    src = os.path.join(tmp, 'speed.mp4')
    write_video(src, frames, codec='libx264', pix_fmt='yuv420p', crf=18, audio_seconds=args.speed_frames / 24)
    runs = []
    for overlap in (False, True):
        t0 = time.perf_counter()
        result = upscale_video(up, src, os.path.join(tmp, f'speed_out_{overlap}.mp4'), overlap=overlap)
        runs.append((overlap, result, time.perf_counter() - t0))
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default=None, help='a KDSR student checkpoint (default: the built-in model)')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--photo', default='coffee.png', help='a photo of datasets/samples/train')
    parser.add_argument('--frames', type=int, default=24)
    parser.add_argument('--lr', default='72x54', help='LR clip size, WxH (the output is x4; the pan needs '
                        'width + frames - 1 <= 100 with the 400-pixel sample photos)')
    parser.add_argument('--blur', type=float, default=1.2, help='Gaussian blur sigma, HR pixels')
    parser.add_argument('--noise', type=float, default=5.0, help='Gaussian noise sigma per frame, 0-255')
    parser.add_argument('--speed-frames', type=int, default=6, help='frames of the 320x180 speed clip (0: none)')
    args = parser.parse_args()
    up = KDSRUpscaler(args.model, device=args.device)
    print(f'model: {args.model or "built-in"}, {up.spec.n_feats} features, x{up.scale}, device {up.device}, '
          f'{"bf16" if up.bf16 else "fp32"}, {torch.get_num_threads()} CPU thread(s)\n')
    with tempfile.TemporaryDirectory() as tmp:
        print(f'Flicker: {args.frames} frames of {args.lr} LR ({args.photo}, blur sigma {args.blur}, '
              f'noise sigma {args.noise} per frame), output x{up.scale}; lower is steadier\n')
        print('| clip | method | mean abs frame difference | mean abs change of frame mean | shots found |')
        print('|---|---|---|---|---|')
        for clip, label, mad, mean_change, shots in flicker_rows(up, args, tmp):
            print(f'| {clip} | {label} | {mad:.3f} | {mean_change:.4f} | {shots} |')
        size = tuple(int(v) for v in args.lr.split('x'))
        frames = list(clip_frames(degraded_photo(args.photo, args.blur), size, 4, args.noise, 0))
        spread, change = idr_sensitivity(up, frames)
        print(f'\nPer-frame IDRs of the static clip: relative spread {spread:.2e}; upscaling a frame under the '
              f'shot\'s mean IDR instead of its own changes its output by {change:.4f} (0-255) on average.')
        if args.speed_frames:
            runs = speed_row(up, args, tmp)
            result = runs[0][1]
            print(f'\nSpeed: 320x180 -> {result.size[0]}x{result.size[1]} H.264 + AAC, {result.frames} frames. '
                  'Shares of the wall time; with the overlap, decode and encode run in their own threads and '
                  '"exposed" is the time the upscaling waited for them.\n')
            print('| decode/encode | frames/s (all passes) | frames/s (upscale only) | analysis | decode | upscale | '
                  'encode | exposed decode+encode |')
            print('|---|---|---|---|---|---|---|---|')
            for overlap, result, wall in runs:
                t = result.timings
                exposed = t['wait'] if overlap else t['decode'] + t['encode']
                print(f'| {"overlapped (threads)" if overlap else "in turn"} | {result.frames / wall:.3f} | '
                      f'{result.frames / t["upscale"]:.3f} | '
                      + ' | '.join(f'{100 * t[k] / wall:.1f}%' for k in ('analysis', 'decode', 'upscale', 'encode'))
                      + f' | {100 * exposed / wall:.1f}% |')


if __name__ == '__main__':
    main()
