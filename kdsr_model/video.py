"""Upscale videos (and animated GIFs and WebPs) frame by frame with one IDR per shot, so the output does not flicker.

    from kdsr_model.upscaler import KDSRUpscaler
    from kdsr_model.video import output_name, upscale_video
    up = KDSRUpscaler()
    result = upscale_video(up, 'clip.mp4', output_name('clip.mp4'))   # -> clip_out.mp4
    result.frames, result.shots, result.seconds

KDSR estimates the degradation of each image (its IDR) and upscales under it. On a video the
estimate of each frame may move with its noise and content, and the output with it (flicker);
one IDR per shot rules that out (``benchmarks/video_flicker.py`` measures how much it
matters for a model). The video is read in three streamed passes, each holding one frame:

1. **Shots**: every frame as a 64-pixel-wide grayscale thumbnail; only the previous thumbnail
   is kept, and the mean absolute difference to it (:func:`frame_difference`). A frame starts a
   new shot where that difference is a jump (:func:`find_shots`).
2. **IDRs**: up to :data:`IDR_SAMPLES` evenly spaced frames of each shot; their IDRs averaged.
3. **Upscale**: each frame upscaled under its shot's IDR and encoded; audio packets copied.
   Decoding and encoding run in two threads beside the upscaling, each at most
   :data:`AHEAD` frames away from it (``overlap=False``: all in turn, in one thread).

More than 8 bits per component (10-bit video) are decoded to 16-bit BGR, upscaled 16-bit and
encoded yuv420p10le where the encoder has it. Animated WebP, which FFmpeg cannot decode, is
read by Pillow into an in-memory lossless copy first (:func:`_animated_webp`).

Frame timestamps are copied (variable frame rate and start time survive), and so are the audio
streams (stream copy where the output container takes their codec, else re-encoded) and the
subtitle streams (copied). Output goes to a
hidden temporary file renamed at the end: a failed or killed run leaves nothing under the
final name. Nothing here prints; progress goes to an optional callback.

PyAV (``pip install 'kdsr[video]'``) is imported only when a video is read.
"""
import bisect
import fractions
import io
import os
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import OptionError
from .io import atomic_output, first_line

VIDEO_EXTS = ('.mp4', '.mkv', '.webm', '.mov', '.avi')
ANIMATED_EXTS = ('.gif', '.webp')  # animated images, read as videos when they hold more than one frame
OUTPUT_EXT = {'.avi': '.mkv'}  # inputs whose output goes to another container
IDR_MODES = ('per-shot', 'per-frame', 'per-video')
IDR_SAMPLES = 5  # frames per shot whose IDRs are averaged
VIDEO_IDR_SAMPLES = 15  # frames of the whole video whose IDRs are averaged ('per-video')
THUMB_WIDTH = 64  # width of the grayscale thumbnails that shot detection compares
CUT_THRESHOLD = 12.0  # a cut: thumbnail mean absolute difference (0-255) at least this ...
CUT_RATIO = 3.0  # ... and at least this many times the median difference around it
CUT_WINDOW = 6  # frames on each side whose differences make that median
MIN_SHOT = 3  # frames: a cut closer than this to the previous one is ignored (flashes)
DEFAULT_CRF = 18
X264_PRESET = 'medium'
VP9_SPEED = 4  # libvpx-vp9 cpu-used: 0 best and slowest, 8 fastest; 4 is a CPU-friendly middle
GIF_COLOURS = 256
WEBP_QUALITY = 90  # libwebp quality (0-100) of animated WebP output


class VideoError(ValueError):
    """A video that cannot be read (broken, truncated, no video stream): ``str()`` names the
    file, ``reason`` is the message without it."""

    def __init__(self, path, reason):
        super().__init__(f'{path}: {reason}')
        self.path = path
        self.reason = reason


@dataclass
class VideoResult:
    """What :func:`upscale_video` did.

    Attributes:
        path (str): The output file.
        frames (int): Frames written.
        shots (list[int]): Index of the first frame of each shot found (always from 0).
        idr_mode (str): 'per-shot', 'per-frame' or 'per-video'.
        idrs (list): The IDRs used: one per shot ('per-shot'), one ('per-video'), none
            ('per-frame': each frame its own).
        seconds (float): Wall time of the whole run.
        size (tuple): Output ``(width, height)``.
        rate (Fraction | None): The frame rate written in the output's header (the input's average).
        audio (str): 'copied (<codec>)', 're-encoded (<codec>)' or 'none' (several: joined by '; ').
        streams (list[str]): Each stream kept besides the video, e.g. 'subtitle #2: copied (subrip)'.
        notes (list[str]): Things worth telling the user (e.g. a pixel cropped, streams dropped).
        timings (dict): Seconds spent in 'analysis' (passes 1-2), 'decode', 'upscale' and 'encode'
            (with the overlap, decode and encode run in their own threads), and with it 'wait':
            the seconds the upscaling waited for a decoded frame or for room to hand one on.
    """
    path: str
    frames: int = 0
    shots: list = field(default_factory=list)
    idr_mode: str = 'per-shot'
    idrs: list = field(default_factory=list)
    seconds: float = 0.0
    size: tuple = (0, 0)
    rate: fractions.Fraction = None
    audio: str = 'none'
    streams: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def shot_of(self, frame):
        """Index in :attr:`shots` of the shot that frame number ``frame`` belongs to."""
        return bisect.bisect_right(self.shots, frame) - 1

    def idr_of(self, frame):
        """Index in :attr:`idrs` of the IDR frame number ``frame`` was upscaled under (None:
        its own, 'per-frame')."""
        if self.idr_mode == 'per-frame':
            return None
        return 0 if self.idr_mode == 'per-video' else self.shot_of(frame)


# ----------------------------------------------------------------- names


def is_video_name(name):
    """Whether a file name is a video or an animated-image kind by its extension (a GIF may
    still hold one frame: see :func:`is_video_file`)."""
    return name.lower().endswith(VIDEO_EXTS + ANIMATED_EXTS) and not name.startswith('.')


def is_video_file(path):
    """Whether ``path`` is to be read as a video: a video extension, or a GIF or WebP of more than one frame."""
    if not is_video_name(os.path.basename(path)):
        return False
    if not path.lower().endswith(ANIMATED_EXTS):
        return True
    return _animation(path)[0] > 1


def _animation(path):
    """``(frames, loop)`` of an animated image as Pillow reads it (loop: 0 forever, None once);
    ``(0, None)`` when Pillow cannot read it."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            return getattr(im, 'n_frames', 1), im.info.get('loop')
    except (OSError, ValueError, EOFError, SyntaxError):
        return 0, None


def output_name(in_path, suffix='out'):
    """``<stem>_<suffix>.<ext>`` for the output of ``in_path`` (its folder dropped): the same
    container, except AVI, which becomes MKV (H.264 and most audio codecs fit there)."""
    stem, ext = os.path.splitext(os.path.basename(in_path))
    ext = ext.lower()
    return f'{stem}_{suffix}{OUTPUT_EXT.get(ext, ext)}'


def require_av():
    """The ``av`` module (PyAV), or :class:`OptionError` saying how to install it."""
    try:
        import av
    except ImportError:
        raise OptionError("videos need PyAV: pip install 'kdsr[video]'") from None
    return av


# ----------------------------------------------------------------- shots


def frame_difference(a, b):
    """Mean absolute difference (0-255) of two thumbnails of :func:`_frame_thumbnail`."""
    return float(np.abs(a - b).mean())


def find_shots(diffs, threshold=CUT_THRESHOLD, ratio=CUT_RATIO, window=CUT_WINDOW, min_shot=MIN_SHOT):
    """The first frame of each shot, from the differences between consecutive frames.

    Frame ``i`` starts a shot when ``diffs[i]`` (its thumbnail's mean absolute difference to
    frame ``i - 1``'s, 0-255; ``diffs[0]`` is ignored) is at least ``threshold`` and at least
    ``ratio`` times the median of the differences of the ``window`` frames on each side: a
    hard cut is a jump, while fast motion or a pan raises all differences around it alike.
    A cut less than ``min_shot`` frames after the previous one is ignored (a flash, a
    glitch). Gradual transitions (fades, dissolves) are not found: they stay in one shot.

    Args:
        diffs (sequence[float]): Per-frame differences, as :func:`frame_difference` gives.
        threshold (float): Smallest difference that can be a cut.
        ratio (float): How many times the local median difference a cut must be.
        window (int): Frames on each side for the local median.
        min_shot (int): Shortest shot, in frames.

    Returns:
        list[int]: Shot starts, ``[0, ...]`` (``[0]`` for an empty or one-shot video).
    """
    diffs = np.asarray(diffs, dtype=np.float64)
    shots = [0]
    for i in range(1, len(diffs)):
        if diffs[i] < threshold or i - shots[-1] < min_shot:
            continue
        around = np.concatenate([diffs[max(1, i - window):i], diffs[i + 1:i + 1 + window]])
        if not len(around) or diffs[i] >= ratio * float(np.median(around)):
            shots.append(i)
    return shots


def sample_frames(first, end, count):
    """Up to ``count`` evenly spaced frame indices of frames ``first`` to ``end - 1``: the
    middles of ``count`` equal parts."""
    n = min(count, end - first)
    return sorted({first + int((k + 0.5) * (end - first) / n) for k in range(n)})


# ----------------------------------------------------------------- reading


@dataclass
class _Window:
    """The part of a video to read: frames whose time from the video's start (``t0``) is in
    ``[start, end)``, seconds."""
    t0: float = 0.0
    start: float = 0.0
    end: float = float('inf')

    def where(self, t):
        """-1 before the window, 0 in it, 1 after it (``t``: seconds, stream time)."""
        rel = t - self.t0
        if rel < self.start - 1e-6:
            return -1
        return 0 if rel < self.end - 1e-6 else 1


@dataclass
class _Scan:
    """Pass 1's findings."""
    frames: int
    shots: list
    covered: float  # seconds from the window's start to the end of the last frame read
    size: tuple = (0, 0)  # (width, height) of the first frame
    rotation: int = 0
    bits: int = 8  # bits per component of the first frame (10 for 10-bit video)
    interlaced: bool = False  # the first frame is flagged interlaced
    alpha: bool = False  # some frame has transparent pixels (animated GIF / WebP)


def _animated_webp(av, path):
    """FFmpeg does not decode animated WebP: Pillow reads its frames (composited on the canvas,
    with their alpha) into an in-memory lossless FFV1/Matroska copy with millisecond timestamps,
    which is then read as any video. Its size is that of the input's frames, compressed
    losslessly (animated WebPs are short); the passes each make their own."""
    from PIL import Image
    buf, ms = io.BytesIO(), fractions.Fraction(1, 1000)
    try:
        with Image.open(path) as im, av.open(buf, 'w', format='matroska') as out:
            stream = out.add_stream('ffv1')
            stream.width, stream.height, stream.pix_fmt = im.size[0], im.size[1], 'bgra'
            stream.time_base = stream.codec_context.time_base = ms
            t = 0
            for i in range(getattr(im, 'n_frames', 1)):
                im.seek(i)
                frame = av.VideoFrame.from_ndarray(np.asarray(im.convert('RGBA')), format='rgba').reformat(format='bgra')
                duration = im.info.get('duration') or 100  # ms; 0 or none: 10 fps, as browsers show it
                frame.pts, frame.time_base, frame.duration = t, ms, duration
                for packet in stream.encode(frame):
                    packet.duration = duration
                    out.mux(packet)
                t += duration
            out.mux(stream.encode(None))
    except (OSError, ValueError, EOFError, SyntaxError) as err:
        raise VideoError(path, f'not an animated WebP, or broken ({first_line(err)})') from None
    buf.seek(0)
    return buf


def loop_count(path):
    """How often an animated GIF or WebP plays (Pillow's ``loop``: 0 forever; None: once, no
    loop extension); None for other files."""
    return _animation(path)[1] if path.lower().endswith(ANIMATED_EXTS) else None


def _open_input(av, path):
    """The input container and its first video stream; :class:`VideoError` if unreadable."""
    try:
        if path.lower().endswith('.webp') and os.path.isfile(path):
            container = av.open(_animated_webp(av, path), format='matroska')
        else:
            container = av.open(path)
    except av.error.FileNotFoundError:
        raise
    except (av.error.FFmpegError, OSError) as err:
        raise VideoError(path, f'not a video, or broken ({_reason(err)})') from None
    if not container.streams.video:
        container.close()
        raise VideoError(path, 'no video stream')
    return container, container.streams.video[0]


@contextmanager
def _opened(path, start=None, duration=None):
    """``(av, container, video stream, window)`` of ``path``, the container closed on exit."""
    av = require_av()
    container, video = _open_input(av, path)
    with container:
        yield av, container, video, _window(video, start, duration)


def _reason(err):
    """An FFmpeg error in words, without its code and file name."""
    return getattr(err, 'strerror', None) or first_line(err)


def _frame_rate(stream):
    """The stream's average frame rate (Fraction), its guessed rate if none, else None."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return fractions.Fraction(rate)
    return None


def _window(stream, start, duration):
    t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    start = max(0.0, start or 0.0)
    end = start + duration if duration is not None else float('inf')
    return _Window(t0, start, end)


def _seek(container, stream, window):
    """Jump to the key frame at or before the window's start (frames before it are skipped
    when read); containers that cannot seek are read from their beginning."""
    if window.start <= 0:
        return
    try:
        container.seek(int((window.t0 + window.start) / stream.time_base), stream=stream, backward=True)
    except Exception:  # noqa: BLE001  (any failure: read from the start instead)
        container.seek(0)


def _read(av, container, path, window, video, others=()):
    """Yield ``('video', index, frame)`` for the frames in ``window`` and ``('packet', packet)``
    for the packets of the streams ``others`` (audio, subtitles) in it, in file order; stop
    once the video and every audio stream are past the window's end (subtitles are sparse).

    Frames without a timestamp are timed by their index and the frame rate. Read errors
    become :class:`VideoError` naming ``path``.
    """
    _seek(container, video, window)
    rate = _frame_rate(video) or 25
    streams = [video, *others]
    waiting = {s for s in others if s.type == 'audio'}  # streams not yet past the window's end
    index, decoded, video_done = 0, 0, False
    try:
        for packet in container.demux(*streams):
            if packet.stream is video:
                if video_done:
                    continue
                for frame in packet.decode():
                    t = float(frame.time) if frame.time is not None else window.t0 + float(decoded / rate)
                    decoded += 1
                    where = window.where(t)
                    if where < 0:
                        continue
                    if where > 0:
                        video_done = True
                        break
                    yield 'video', index, frame
                    index += 1
            elif packet.dts is not None:
                if video_done and packet.pts is not None and window.where(float(packet.pts * packet.time_base) - 5) > 0:
                    return  # 5 s past the window: a stream that ended early would keep us reading to the end
                where = 0 if packet.pts is None else window.where(float(packet.pts * packet.time_base))
                if where < 0 and window.start <= 0:
                    where = 0  # priming packets before the first frame belong to the start
                if where > 0:
                    waiting.discard(packet.stream)
                elif where == 0:
                    yield 'packet', packet
            if video_done and not waiting:
                return
    except av.error.FFmpegError as err:
        raise VideoError(path, f'broken video ({_reason(err)})') from None


def _declared_length(video, container):
    """``(frames or None, seconds or None, tolerance)`` the file says its video has (seconds
    from its first frame): the stream's frame count, and its duration (or Matroska's DURATION
    tag), else the container's duration (which may include a longer audio track, hence a
    looser tolerance)."""
    tol = 1.5 / float(_frame_rate(video) or 25) + 0.02  # the last frame's duration may be a guess
    frames = video.frames or None
    if video.duration:
        return frames, float(video.duration * video.time_base), tol
    tag = (video.metadata or {}).get('DURATION')
    if tag:
        try:
            h, m, s = tag.split(':')
            t0 = float(video.start_time * video.time_base) if video.start_time else 0.0
            return frames, int(h) * 3600 + int(m) * 60 + float(s) - t0, tol  # FFmpeg writes the end time
        except ValueError:
            pass
    if container.duration:
        seconds = container.duration / 1e6
        return frames, seconds, max(1.0, 0.1 * seconds)
    return frames, None, 0.0


def _check_complete(path, scan, window, declared):
    """:class:`VideoError` when the frames read stop short of what the file declares (more
    than one frame missing, or their end short by more than 1.5 frames, or, against a
    container's duration only, by more than 1 s or 10%), or a GIF lacks its trailer byte:
    the file is truncated (or its end is broken)."""
    if path.lower().endswith('.gif') and not _gif_complete(path):
        raise VideoError(path, 'truncated GIF (no trailer)')
    frames, seconds, tol = declared
    whole = window.start <= 0 and window.end == float('inf')
    if scan.frames == 0:
        raise VideoError(path, 'no frames could be decoded (broken or truncated video)')
    if whole and frames and scan.frames < frames - 1:  # one frame of slack: an edit list may drop one
        raise VideoError(path, f'truncated or broken video: {scan.frames} of {frames} frames could be decoded')
    if seconds is not None:
        want = min(window.end, seconds) - window.start
        if want > 0 and scan.covered < want - tol:
            raise VideoError(path, f'truncated or broken video: frames end at {scan.covered:.2f} s '
                             f'of {want + window.start:.2f} s')


def _gif_complete(path):
    """Whether a GIF file ends with its trailer byte (0x3B), which every complete GIF has."""
    with open(path, 'rb') as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b'\x3b'


def scan_video(path, start=None, duration=None, thumb_width=THUMB_WIDTH, **cut_options):
    """Pass 1: read the video once, keeping one thumbnail at a time; find its shots and
    check that it is complete.

    Args:
        path (str): The video.
        start (float | None): Seconds from the start of the video to begin at.
        duration (float | None): Seconds to read from ``start``; None: to the end.
        thumb_width (int): Width of the thumbnails compared.
        **cut_options: ``threshold``, ``ratio``, ``window``, ``min_shot`` of :func:`find_shots`.

    Returns:
        _Scan: ``frames`` (count), ``shots`` (first frame indices), ``covered`` (seconds).

    Raises:
        VideoError: not a video, broken, or truncated (frames missing against its header).
    """
    with _opened(path, start, duration) as (av, container, video, window):
        rate = float(_frame_rate(video) or 25)
        diffs, prev, covered, size, rotation, bits, interlaced, alpha = [], None, 0.0, (0, 0), 0, 8, False, False
        for _, index, frame in _read(av, container, path, window, video):
            thumb = _frame_thumbnail(frame, thumb_width)
            alpha = alpha or _transparent(frame)
            diffs.append(0.0 if prev is None or prev.shape != thumb.shape else frame_difference(prev, thumb))
            prev = thumb
            if index == 0:
                size, rotation, bits = (frame.width, frame.height), _rotation(frame), _bits(frame)
                interlaced = bool(getattr(frame, 'interlaced_frame', False))
            t = float(frame.time) if frame.time is not None else window.t0 + window.start + index / rate
            dur = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 1 / rate
            covered = max(covered, t - window.t0 - window.start + dur)
        scan = _Scan(len(diffs), find_shots(diffs, **cut_options), covered, size, rotation, bits, interlaced, alpha)
        _check_complete(path, scan, window, _declared_length(video, container))
    return scan


def _frame_thumbnail(frame, width):
    """A float32 grayscale copy of a decoded frame, ``width`` pixels wide, area-averaged (which also
    averages out most of the noise), made by FFmpeg from its luma (no full-size BGR copy)."""
    w = min(width, frame.width)
    h = max(1, round(frame.height * w / frame.width))
    return frame.reformat(width=w, height=h, format='gray', interpolation='AREA').to_ndarray().astype(np.float32)


def _rotation(frame):
    try:
        return int(round(frame.rotation or 0))
    except (AttributeError, TypeError, ValueError):
        return 0


def _bits(frame):
    """Bits per component of a decoded frame's pixel format (8, 10, 12...)."""
    return max((c.bits for c in frame.format.components), default=8)


ALPHA_FORMATS = ('bgra', 'rgba', 'argb', 'abgr', 'pal8', 'ya8')  # decoded formats that may carry transparency


def _transparent(frame):
    """Whether a decoded frame has pixels that are not opaque."""
    return frame.format.name in ALPHA_FORMATS and int(frame.to_ndarray(format='bgra')[:, :, 3].min()) < 255


def _to_bgr(frame, alpha=False):
    """A decoded frame as an H x W x 3 BGR array (``alpha``: H x W x 4 BGRA where the frame's
    format has alpha; else dropped), converted with the frame's own colour matrix and range:
    uint8, or uint16 (full 16-bit scale) for a frame of more than 8 bits per component, which
    the upscaler keeps 16-bit."""
    fmt = frame.format.name
    if fmt in ALPHA_FORMATS:
        return np.ascontiguousarray(frame.to_ndarray(format='bgra')[:, :, :4 if alpha else 3])
    deep = _bits(frame) > 8
    return frame.reformat(format='bgr48le' if deep else 'bgr24', src_color_range=frame.color_range or None,
                          interpolation=_sws_flags()).to_ndarray()


def _sws_flags():
    """Colour conversion flags: accurate rounding and full chroma resolution. FFmpeg's default
    (bilinear, fast rounding) darkens a BGR -> yuv420p -> BGR round trip by about 2 levels."""
    from av.video.reformatter import Interpolation as sws
    return sws.BICUBIC | sws.ACCURATE_RND | sws.FULL_CHR_H_INT | sws.FULL_CHR_H_INP


# ----------------------------------------------------------------- IDRs


def shot_idrs(upscaler, path, scan, idr_mode, start=None, duration=None, samples=IDR_SAMPLES):
    """Pass 2: the IDRs the frames are upscaled under (see :class:`VideoResult`'s ``idrs``).

    'per-shot': the mean IDR of up to ``samples`` evenly spaced frames of each shot;
    'per-video': of up to :data:`VIDEO_IDR_SAMPLES` of the whole video; 'per-frame': none
    (and the video is not read).
    """
    if idr_mode == 'per-frame':
        return []
    import torch
    if idr_mode == 'per-video':
        parts = [(0, scan.frames)]
        samples = VIDEO_IDR_SAMPLES
    else:
        parts = list(zip(scan.shots, scan.shots[1:] + [scan.frames]))
    wanted = {}
    for k, (first, end) in enumerate(parts):
        for i in sample_frames(first, end, samples):
            wanted[i] = k
    found, last = [[] for _ in parts], max(wanted)
    with _opened(path, start, duration) as (av, container, video, window):
        for _, index, frame in _read(av, container, path, window, video):
            if index in wanted:
                found[wanted[index]].append(upscaler.image_idr(_to_bgr(frame)))
            if index >= last:
                break
    if any(not f for f in found):
        raise VideoError(path, 'frames differ between two reads of the file (broken video?)')
    return [torch.stack(f).mean(0) for f in found]


# ----------------------------------------------------------------- writing


def _video_codec(ext, codec):
    if codec:
        return codec
    return {'.webm': 'libvpx-vp9', '.gif': 'gif', '.webp': 'libwebp_anim'}.get(ext, 'libx264')


def _codec_options(codec, crf, preset):
    """Encoder options: CRF rate control; x264's preset, VP9's speed (``preset`` as cpu-used);
    WebP's quality (:data:`WEBP_QUALITY`; ``crf`` does not apply)."""
    if codec == 'libx264' or codec == 'libx265':
        return {'crf': str(crf), 'preset': preset or X264_PRESET}
    if codec in ('libvpx-vp9', 'libvpx'):
        return {'crf': str(crf), 'b': '0', 'cpu-used': str(preset if preset is not None else VP9_SPEED),
                'row-mt': '1', 'deadline': 'good'}
    if codec in ('libwebp_anim', 'libwebp'):
        return {'quality': str(WEBP_QUALITY)}
    return {}


class _Clock:
    """Output timestamps: the input's, less ``offset``, kept strictly increasing (missing or
    repeated ones become the previous plus one frame, ``step``)."""

    def __init__(self, offset, step):
        self.offset = offset
        self.step = max(1, step)
        self.last = None

    def __call__(self, pts):
        out = None if pts is None else pts - self.offset
        if out is None or (self.last is not None and out <= self.last):
            out = 0 if self.last is None else self.last + self.step
        self.last = out
        return out


class _VideoWriter:
    """Encodes BGR uint8 frames into a new video stream of ``out``, with the input stream's
    time base, frame rate, colour tags and rotation."""

    def __init__(self, out, ext, codec, video, size, crf, preset, rotation, bits=8, notes=None, alpha=False):
        self.codec = _video_codec(ext, codec)
        self.gif = self.codec == 'gif'
        self.alpha = alpha and self.codec in ('gif', 'libwebp_anim')  # formats that keep transparency (and
        # the frames are decoded with it only then: upscaling the alpha costs a second pass of the net)
        if alpha and not self.alpha and notes is not None:
            notes.append(f'transparency dropped: {self.codec} keeps none (GIF and WebP outputs do)')
        rate = _frame_rate(video)
        self.stream = out.add_stream(self.codec, rate=rate if not self.gif else None,
                                     options=_codec_options(self.codec, crf, preset))
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = 'pal8' if self.gif else 'yuva420p' if self.alpha else _pixel_format(
            self.codec, bits, notes)
        sar = video.sample_aspect_ratio or video.codec_context.sample_aspect_ratio
        if sar and sar != 1 and not self.gif:  # non-square pixels stay so: the picture keeps its shape
            self.stream.codec_context.sample_aspect_ratio = sar
        tb = video.time_base or (1 / rate if rate else fractions.Fraction(1, 25))
        self.stream.time_base = self.stream.codec_context.time_base = tb
        cc, src = self.stream.codec_context, video.codec_context
        if not self.gif:
            for name in ('color_primaries', 'color_trc', 'colorspace', 'color_range'):
                try:
                    setattr(cc, name, getattr(src, name))
                except (AttributeError, ValueError, TypeError):
                    pass
            if rotation:
                self.stream.set_display_rotation(rotation)
        self.size = size
        self.durations = {}  # pts -> duration of the frames in the encoder

    def mux(self, out, frame, duration=None):
        """Encode ``frame`` (None: flush) and mux its packets, each with its frame's duration
        where the encoder leaves none (the GIF encoder does: its last frame would be cut short)."""
        if frame is not None and duration:
            self.durations[frame.pts] = duration
        for packet in self.stream.encode(frame):
            duration = self.durations.pop(packet.pts, None)
            if not packet.duration and duration:
                packet.duration = duration
            out.mux(packet)

    def frame(self, img, like):
        """The av frame of BGR ``img``, converted for the encoder, timed as the input ``like``."""
        av = require_av()
        if self.gif:
            return _pal8_frame(av, img if img.dtype == np.uint8 else (img >> 8).astype(np.uint8))
        img = img[:self.size[1], :self.size[0], :4 if self.alpha else 3]
        fmt = 'bgra' if img.shape[2] == 4 else 'bgr48le' if img.dtype == np.uint16 else 'bgr24'
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=fmt)
        kwargs = {'interpolation': _sws_flags()}
        src, pix_fmt = self.stream.codec_context, self.stream.pix_fmt
        if src.color_range:
            kwargs['dst_color_range'] = src.color_range
        try:
            return frame.reformat(format=pix_fmt, dst_colorspace=like.colorspace, **kwargs)
        except (ValueError, TypeError):  # a colour matrix swscale does not know: its default
            return frame.reformat(format=pix_fmt, **kwargs)


def _pixel_format(codec, bits, notes):
    """yuv420p, or for input of more than 8 bits yuv420p10le where the encoder has it (else
    yuv420p, with a note)."""
    if bits <= 8:
        return 'yuv420p'
    try:
        formats = [f.name for f in require_av().codec.Codec(codec, 'w').video_formats or ()]
    except Exception:  # noqa: BLE001  (an encoder PyAV cannot describe: the safe default)
        formats = []
    if 'yuv420p10le' in formats:
        return 'yuv420p10le'
    if notes is not None:
        tip = ' (libx264 and libx265 do: --video_codec)' if codec not in ('libwebp_anim', 'gif') else ''
        notes.append(f'{bits}-bit input written as 8-bit: the {codec} encoder here has no 10-bit format{tip}')
    return 'yuv420p'


def _pal8_frame(av, img):
    """A GIF frame of BGR(A) ``img``: 256 colours by median cut (Pillow), its own palette; with
    alpha, 255 colours and a transparent one for the pixels less than half opaque."""
    from PIL import Image
    alpha = img.shape[2] == 4
    q = Image.fromarray(np.ascontiguousarray(img[:, :, 2::-1])).quantize(GIF_COLOURS - alpha)
    pal = np.zeros((256, 3), np.uint8)
    rgb = np.asarray(q.getpalette()[:768], np.uint8).reshape(-1, 3)[:GIF_COLOURS - alpha]
    pal[:len(rgb)] = rgb
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), pal], axis=1)
    index = np.asarray(q)
    if alpha:
        argb[255, 0] = 0
        index = np.where(img[:, :, 3] < 128, 255, index).astype(np.uint8)
    return av.VideoFrame.from_ndarray((index, argb), format='pal8')


class _Track:
    """One input stream besides the video carried into ``out``: packets copied (stream copy),
    shifted back by the window's start as the frames are.

    Attributes:
        source (Stream): The input stream.
        kind (str): 'audio' or 'subtitle'.
        label (str): What happened to it, e.g. 'copied (aac)'.
    """
    copy = True

    def __init__(self, out, source, offset_s):
        self.source, self.kind = source, source.type
        self.offset = round(offset_s / source.time_base)
        self.stream = out.add_stream_from_template(source)
        self.label = f'copied ({source.codec_context.name})'

    def mux(self, out, packet):
        """Write input ``packet`` to ``out`` (None: the end; nothing to flush when copying)."""
        if packet is None:
            return
        packet.pts = None if packet.pts is None else packet.pts - self.offset
        packet.dts = None if packet.dts is None else packet.dts - self.offset
        packet.stream = self.stream
        out.mux(packet)


class _ReencodedAudio(_Track):
    """An audio stream whose codec ``out``'s container does not take: decoded and re-encoded
    to AAC (Opus in WebM)."""
    copy = False

    def __init__(self, av, out, source):
        self.source, self.kind = source, 'audio'
        codec = 'libopus' if out.format.name == 'webm' else 'aac'
        rate = 48000 if codec == 'libopus' else source.codec_context.sample_rate
        self.stream = out.add_stream(codec, rate=rate)
        self.stream.layout = 'stereo' if source.codec_context.channels > 1 else 'mono'
        self.resampler = av.AudioResampler(format=self.stream.codec_context.format.name, layout=self.stream.layout,
                                           rate=rate)
        self.label = f're-encoded ({codec})'

    def mux(self, out, packet):
        for frame in (packet.decode() if packet is not None else [None]):
            if frame is not None:
                frame.pts = None  # the resampler and the encoder count samples from the start
            for resampled in self.resampler.resample(frame):
                out.mux(self.stream.encode(resampled))
        if packet is None:
            out.mux(self.stream.encode(None))


def _tracks(av, out, container, video, offset_s, notes):
    """The input's streams besides ``video`` that ``out`` carries: every audio stream (copied,
    else re-encoded) and every subtitle stream the output container takes (copied); a note
    for each stream left out."""
    tracks, fmt = [], out.format.name
    for stream in container.streams:
        if stream is video:
            continue
        name = stream.codec_context.name if stream.codec_context else stream.type
        if fmt in ('gif', 'webp'):
            notes.append(f'{stream.type} stream #{stream.index} ({name}) dropped: {fmt.upper()} holds pictures only')
        elif stream.type == 'audio':
            tracks.append(_Track(out, stream, offset_s) if name in out.supported_codecs else
                          _ReencodedAudio(av, out, stream))
        elif stream.type == 'subtitle' and name in out.supported_codecs:
            tracks.append(_Track(out, stream, offset_s))
        elif stream.type == 'subtitle':
            notes.append(f'subtitle stream #{stream.index} ({name}) dropped: {fmt} cannot hold it '
                         '(an mkv output can: -o with .mkv, or convert it first)')
        else:
            notes.append(f'{stream.type} stream #{stream.index} ({name}) not kept')
    return tracks


# ----------------------------------------------------------------- threads

_END = object()
AHEAD = 3  # frames each side of the upscaler may run ahead: decoded, waiting to be encoded


def _join(thread):
    """Wait for ``thread`` to end, through Ctrl-C too (raised again once it has ended): the
    containers it uses must not be closed under it."""
    interrupted = False
    while thread.is_alive():
        try:
            thread.join(0.1)
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt


class _Ahead:
    """Iterates ``items`` in a thread, at most ``size`` items ahead of the consumer, who reads
    them by iterating this object; an error in the thread is raised in the consumer.
    :meth:`close` stops the thread (it checks between items) and waits for it."""

    def __init__(self, items, size=AHEAD, name='kdsr-decode'):
        self.queue, self.stop = queue.Queue(size), threading.Event()
        self.waited = 0.0  # seconds the consumer spent waiting for an item
        self.thread = threading.Thread(target=self._run, args=(items, ), name=name, daemon=True)
        self.thread.start()

    def _put(self, item):
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items):
        try:
            for item in items:
                if not self._put(('item', item)):
                    return
            self._put(('end', None))
        except BaseException as err:  # noqa: BLE001  (handed to the consumer)
            self._put(('error', err))

    def __iter__(self):
        while True:
            t = time.perf_counter()
            kind, value = self.queue.get()
            self.waited += time.perf_counter() - t
            if kind == 'end':
                return
            if kind == 'error':
                raise value
            yield value

    def close(self):
        self.stop.set()
        _join(self.thread)


class _Behind:
    """Calls ``work(item)`` in a thread for each item :meth:`put` (at most ``size`` waiting), in
    order. An error there is raised by the next :meth:`put` or by :meth:`close`, which waits
    for the items put so far (``abort=True``: stops after the current one)."""

    def __init__(self, work, size=AHEAD, name='kdsr-encode'):
        self.work, self.queue, self.error = work, queue.Queue(size), None
        self.aborted = threading.Event()
        self.waited = 0.0  # seconds :meth:`put` waited for room
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if self.error is None and not self.aborted.is_set():
                try:
                    self.work(item)
                except BaseException as err:  # noqa: BLE001  (handed to the producer)
                    self.error = err

    def put(self, item):
        if self.error is not None:
            raise self.error
        t = time.perf_counter()
        self.queue.put(item)
        self.waited += time.perf_counter() - t

    def close(self, abort=False):
        if abort:
            self.aborted.set()
        self.queue.put(_END)
        _join(self.thread)
        if self.error is not None and not abort:
            raise self.error


# ----------------------------------------------------------------- the run


def _check_out_path(in_path, out_path):
    ext = os.path.splitext(out_path)[1].lower()
    if ext not in VIDEO_EXTS + ANIMATED_EXTS:
        raise OptionError(f'{out_path}: a video output must end in one of '
                          f'{", ".join(e[1:] for e in VIDEO_EXTS + ANIMATED_EXTS)}')
    if os.path.abspath(in_path) == os.path.abspath(out_path):
        raise OptionError(f'{out_path}: the output would overwrite its input; name another file')
    return ext


def upscale_video(upscaler, in_path, out_path, idr_mode='per-shot', video_codec=None, crf=DEFAULT_CRF, preset=None,
                  start=None, duration=None, progress=None, overlap=True):
    """Upscale a video (or animated GIF or WebP) into ``out_path``, frame by frame, a few frames in memory.

    The output has the input's frames, timestamps (so frame rate, variable or not, and start
    time), colour tags, rotation, pixel aspect ratio, every audio stream (stream copy where
    the output container takes the codec, else AAC, Opus in WebM) and every subtitle stream
    the output container takes (copied); other streams (data, attachments, subtitles the
    container cannot hold) are dropped, each with a note. Sizes are ``upscaler.scale`` times the input's; for yuv420p
    codecs an odd side loses its last pixel row/column (cropped, noted in the result). GIF
    frames get 256 colours each (median cut; with transparency 255 and a transparent index for
    the pixels under half opacity; FFmpeg's GIF encoder leaves a frame that has no transparent
    pixel on screen under the next, whose transparent pixels then show it); WebP output keeps
    the alpha (yuva420p); a video format drops it (noted) and the alpha is then not upscaled. GIF and WebP keep their frame durations and loop count (with varying WebP
    durations, FFmpeg's WebP encoder gives the last frame the mean of the others). 10-bit
    input stays 10-bit where the encoder has a 10-bit format (else a note).

    Args:
        upscaler (KDSRUpscaler): The model (``enhance(img, idr=...)``, ``image_idr(img)``, ``scale``).
        in_path (str): The video: mp4, mkv, webm, mov, avi, animated GIF or WebP (or anything FFmpeg reads).
        out_path (str): The output file; its extension picks the container (:func:`output_name`).
            Written atomically: nothing appears under this name unless the run succeeds.
        idr_mode (str): 'per-shot' (default: one IDR per shot, no flicker), 'per-frame' (each
            frame its own IDR, as images are upscaled) or 'per-video' (one IDR for all frames).
        video_codec (str | None): FFmpeg encoder; None: libx264 (mp4, mkv, mov, avi),
            libvpx-vp9 (webm), gif (gif), libwebp_anim (webp).
        crf (int): Constant rate factor of x264/x265/VP9 (lower is better; 18 is visually lossless for x264).
        preset (str | int | None): x264 preset (default 'medium'), or VP9 cpu-used (default 4).
        start (float | None): Seconds into the video to start at (a preview); audio alike, to
            whole packets (20-60 ms) when copied. The output starts at time 0.
        duration (float | None): Seconds to upscale from ``start``; None: to the end.
        progress (callable | None): ``progress(done_frames, total_frames)`` after each frame.
        overlap (bool): Decode and encode in threads beside the upscaling, a few frames apart
            (default); False: all in turn in this thread.

    Returns:
        VideoResult: frames, shots, IDRs, seconds, audio, notes, timings.

    Raises:
        OptionError: a bad ``idr_mode`` or output name, or PyAV missing.
        VideoError (ValueError): the input is not a readable video, or is truncated.
    """
    if idr_mode not in IDR_MODES:
        raise OptionError(f"idr_mode must be one of {', '.join(IDR_MODES)}, got {idr_mode!r}")
    ext = _check_out_path(in_path, out_path)
    t_start = time.perf_counter()
    scan = scan_video(in_path, start, duration)
    idrs = shot_idrs(upscaler, in_path, scan, idr_mode, start, duration)
    result = VideoResult(out_path, shots=scan.shots, idr_mode=idr_mode, idrs=idrs)
    result.timings = {'analysis': time.perf_counter() - t_start, 'decode': 0.0, 'upscale': 0.0, 'encode': 0.0}
    with atomic_output(out_path) as tmp:
        _transcode(upscaler, in_path, tmp, ext, scan, result, video_codec, crf, preset, start, duration, progress,
                   overlap)
    result.seconds = time.perf_counter() - t_start
    return result


def _output_size(scan, scale, ext, notes):
    """``(width, height)`` of the output: ``scale`` times the first frame's, even unless GIF."""
    w, h = scan.size[0] * scale, scan.size[1] * scale
    if ext != '.gif' and (w % 2 or h % 2):
        notes.append(f'odd output size {w}x{h}: last column/row cropped to {w - w % 2}x{h - h % 2}')
        w, h = w - w % 2, h - h % 2
    return w, h


def _transcode(upscaler, in_path, tmp, ext, scan, result, codec, crf, preset, start, duration, progress, overlap):
    """Pass 3: decode, upscale, encode and mux, one frame at a time; audio packets alongside.

    With ``overlap``, decoding (and the conversion to BGR) runs in one thread and encoding and
    muxing in another, each at most :data:`AHEAD` frames from the upscaler, which runs here."""
    timings = result.timings
    with _opened(in_path, start, duration) as (av, container, video, window), \
            av.open(tmp, 'w', options=_muxer_options(in_path, ext)) as out:
        result.size, result.rate = _output_size(scan, upscaler.scale, ext, result.notes), _frame_rate(video)
        writer = _VideoWriter(out, ext, codec, video, result.size, crf, preset, scan.rotation, scan.bits,
                              result.notes, scan.alpha)
        if scan.interlaced:
            result.notes.append('interlaced input: frames are upscaled as progressive pictures (deinterlace it '
                                'first for a better result)')
        tracks = _tracks(av, out, container, video, window.t0 + window.start if window.start > 0 else 0.0,
                         result.notes)
        by_source = {t.source: t for t in tracks}
        result.streams = [f'{t.kind} #{t.source.index}: {t.label}' for t in tracks]
        audio = [t for t in tracks if t.kind == 'audio']
        result.audio = '; '.join(t.label for t in audio) or 'none'
        if window.start > 0 and audio:
            result.notes.append('audio trimmed to whole packets (within 20-60 ms)'
                                if all(t.copy for t in audio) else 'audio trimmed')
        clock = _Clock(round((window.t0 + window.start) / video.time_base) if window.start > 0 else 0,
                       _frame_step(video))

        def decoded():
            """The input's items, video frames as ``('video', index, frame, bgr)``; decode time counted."""
            items = _read(av, container, in_path, window, video, list(by_source))
            while True:
                t = time.perf_counter()
                item = next(items, None)
                if item is not None and item[0] == 'video':
                    item = (*item, _fit(_to_bgr(item[2], writer.alpha), scan.size))
                timings['decode'] += time.perf_counter() - t
                if item is None:
                    return
                yield item

        def encode(item):
            t = time.perf_counter()
            if item[0] == 'packet':
                by_source[item[1].stream].mux(out, item[1])
            else:
                _, up, frame = item
                out_frame = writer.frame(up, frame)
                out_frame.pts, out_frame.time_base = clock(frame.pts), video.time_base
                if frame.duration:
                    out_frame.duration = frame.duration  # the input frame's, for encoders that read it
                writer.mux(out, out_frame, frame.duration)
            timings['encode'] += time.perf_counter() - t

        source = _Ahead(decoded()) if overlap else None
        sink = _Behind(encode) if overlap else None
        done = False
        try:
            for item in (source if overlap else decoded()):
                if item[0] == 'video':
                    _, index, frame, img = item
                    t = time.perf_counter()
                    idr = upscaler.image_idr(img) if result.idr_mode == 'per-frame' else result.idrs[result.idr_of(index)]
                    up, _ = upscaler.enhance(img, idr=idr)
                    timings['upscale'] += time.perf_counter() - t
                    item = ('video', up, frame)
                (sink.put if overlap else encode)(item)
                if item[0] == 'video':
                    result.frames += 1
                    if progress is not None:
                        progress(result.frames, scan.frames)
            done = True
        finally:
            if overlap:
                try:
                    source.close()
                finally:
                    sink.close(abort=not done)
                timings['wait'] = source.waited + sink.waited
        t = time.perf_counter()
        for track in tracks:
            track.mux(out, None)
        writer.mux(out, None)
        timings['encode'] += time.perf_counter() - t
    if result.frames != scan.frames:
        raise VideoError(in_path, f'{result.frames} frames read now, {scan.frames} before (broken video?)')


def _muxer_options(in_path, ext):
    """An animated GIF or WebP output plays as often as its input did (once when the input is a
    video). GIF counts repeats (NETSCAPE loop n: n + 1 plays), WebP plays (ANIM loop n: n plays)."""
    loop = loop_count(in_path)
    in_gif = in_path.lower().endswith('.gif')
    plays = 1 if loop is None else 0 if loop == 0 else loop + 1 if in_gif else loop  # 0: forever
    if ext == '.gif':
        return {'loop': '0' if plays == 0 else '-1' if plays == 1 else str(plays - 1)}  # 0 forever, -1 once
    if ext == '.webp':
        return {'loop': str(plays)}  # 0 forever
    return {}


def _fit(img, size):
    """``img`` resized to ``size`` (w, h) if a frame changed size mid-stream (the output's is fixed)."""
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    return cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA)


def _frame_step(video):
    """One frame in the stream's time base (at least 1)."""
    rate = _frame_rate(video) or 25
    return max(1, round(1 / (rate * video.time_base)))
