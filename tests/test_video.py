"""Videos: one IDR per shot, frames, timing and audio kept, atomic output (kdsr_model.video).

The videos are made here with PyAV: 64x48, 12 fps, 2 s, two shots (a photo with fresh noise
per frame, then a cut to another photo) and a 440 Hz sine in AAC. The model is a tiny
random-weight student: these tests check the plumbing, not the picture.
"""
import fractions
import os
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import SAMPLES, save_student
from kdsr_model.errors import OptionError
from kdsr_model.upscaler import KDSRUpscaler
from kdsr_model.video import (VideoError, find_shots, is_video_file, is_video_name, output_name, require_av,
                              upscale_video)

av = pytest.importorskip('av')

W, H, FPS, SECONDS, CUT = 64, 48, 12, 2, 12  # the cut: frame 12 (1 s) starts the second shot
SAMPLE_RATE = 48000


def _photo(name, w=W, h=H):
    img = cv2.imread(os.path.join(SAMPLES, 'train', name), cv2.IMREAD_COLOR)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def make_video(path, codec='libx264', audio='aac', frames=FPS * SECONDS, cut=CUT, seed=0):
    """A two-shot test video (see the module docstring) at ``path``; ``audio`` None: silent."""
    rng = np.random.default_rng(seed)
    shots = _photo('coffee.png'), _photo('rocket.png')
    with av.open(str(path), 'w') as out:
        video = out.add_stream(codec, rate=FPS, options={'crf': '10'})  # the noise survives: frames differ
        video.width, video.height, video.pix_fmt = W, H, 'yuv420p'
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=SAMPLE_RATE)
            sound.layout = 'mono'
        for i in range(frames):
            img = shots[i >= cut].astype(np.float32) + rng.normal(0, 3, (H, W, 3))
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format='bgr24')
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            _write_sine(out, sound, frames / FPS)
    return str(path)


def _write_sine(out, stream, seconds):
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    signal = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    size = stream.codec_context.frame_size or 1024
    for k in range(0, len(signal), size):
        frame = av.AudioFrame.from_ndarray(signal[None, k:k + size], format='fltp', layout='mono')
        frame.sample_rate, frame.pts = SAMPLE_RATE, k
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def probe(path):
    """``(frames, (w, h), average rate, seconds, frame pts, audio seconds or None)`` of a video file."""
    with av.open(path) as c:
        video = c.streams.video[0]
        pts = [f.pts for f in c.decode(video)]
        size, rate, seconds = (video.width, video.height), video.average_rate, c.duration / 1e6
    with av.open(path) as c:
        if not c.streams.audio:
            return len(pts), size, rate, seconds, pts, None
        audio = c.streams.audio[0]
        packets = [p for p in c.demux(audio) if p.dts is not None]
        audio_s = float((packets[-1].pts + packets[-1].duration - packets[0].pts) * audio.time_base)
    return len(pts), size, rate, seconds, pts, audio_s


class Recording:
    """A KDSRUpscaler that records the IDR each frame is upscaled under."""

    def __init__(self, up):
        self.up, self.scale, self.idrs = up, up.scale, []

    def image_idr(self, img):
        return self.up.image_idr(img)

    def enhance(self, img, idr=None):
        self.idrs.append(None if idr is None else idr.detach().clone())
        return self.up.enhance(img, idr=idr)


@pytest.fixture(scope='module')
def upscaler(tmp_path_factory):
    torch.set_num_threads(1)
    path = save_student(tmp_path_factory.mktemp('model') / 'student.pth')
    return KDSRUpscaler(path, device='cpu', bf16=False)


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp('clip') / 'clip.mp4')


def _leftovers(folder, stem):
    return [n for n in os.listdir(folder) if stem in n]


def test_frames_size_rate_duration_and_audio_kept(upscaler, clip, tmp_path):
    out = str(tmp_path / output_name(clip))
    seen = []
    result = upscale_video(upscaler, clip, out, progress=lambda done, total: seen.append((done, total)))
    frames, size, rate, seconds, pts, audio_s = probe(out)
    in_frames, _, in_rate, in_seconds, in_pts, in_audio_s = probe(clip)
    assert out.endswith('clip_out.mp4') and result.path == out
    assert frames == in_frames == result.frames == FPS * SECONDS
    assert size == (4 * W, 4 * H) == result.size
    assert rate == in_rate == FPS and result.rate == FPS
    assert pts == in_pts  # timestamps copied
    assert seconds == pytest.approx(in_seconds, abs=0.05)
    assert result.audio == 'copied (aac)'
    assert audio_s == pytest.approx(in_audio_s, abs=0.03) and audio_s == pytest.approx(SECONDS, abs=0.05)
    assert seen[0] == (1, frames) and seen[-1] == (frames, frames)
    assert result.seconds > 0 and set(result.timings) == {'analysis', 'decode', 'upscale', 'encode', 'wait'}
    assert _leftovers(tmp_path, '.partial') == []


def test_per_shot_idr_is_constant_within_each_shot(upscaler, clip, tmp_path):
    rec = Recording(upscaler)
    result = upscale_video(rec, clip, str(tmp_path / 'shots.mp4'))
    assert result.shots == [0, CUT]  # the cut is found where it is
    assert len(result.idrs) == 2 and len(rec.idrs) == FPS * SECONDS
    for i, idr in enumerate(rec.idrs):
        assert torch.equal(idr, rec.idrs[0] if i < CUT else rec.idrs[CUT])
        assert torch.equal(idr, result.idrs[result.idr_of(i)])
    assert not torch.allclose(rec.idrs[0], rec.idrs[CUT])


def test_per_frame_gives_each_frame_its_idr_and_per_video_one(upscaler, clip, tmp_path):
    rec = Recording(upscaler)
    result = upscale_video(rec, clip, str(tmp_path / 'frames.mkv'), idr_mode='per-frame')
    assert result.idrs == [] and result.idr_of(3) is None
    flat = torch.stack([idr.flatten() for idr in rec.idrs])
    assert len(flat) == FPS * SECONDS and len(torch.unique(flat, dim=0)) == len(flat)  # fresh noise: all differ

    rec = Recording(upscaler)
    result = upscale_video(rec, clip, str(tmp_path / 'one.mkv'), idr_mode='per-video')
    assert len(result.idrs) == 1 and all(torch.equal(idr, result.idrs[0]) for idr in rec.idrs)
    assert result.shots == [0, CUT]  # still found, and reported


def test_find_shots():
    steady = [0.0] + [2.0] * 9 + [40.0] + [2.0] * 9
    assert find_shots(steady) == [0, 10]
    assert find_shots([0.0] + [30.0] * 19) == [0]  # fast motion: every difference large, no jump
    assert find_shots([0.0, 2, 2, 40, 40, 2, 2, 2]) == [0, 3]  # a flash: the cut back is too close
    assert find_shots([]) == [0] and find_shots([0.0]) == [0]


def test_preview_takes_part_of_video_and_audio(upscaler, clip, tmp_path):
    out = str(tmp_path / 'preview.mp4')
    result = upscale_video(upscaler, clip, out, start=0.5, duration=1.0)
    frames, _, rate, seconds, pts, audio_s = probe(out)
    assert frames == result.frames == FPS and rate == FPS
    assert result.shots == [0, CUT - FPS // 2]  # counted from the preview's first frame
    assert pts[0] == 0  # the preview starts at 0
    assert seconds == pytest.approx(1.0, abs=0.06) and audio_s == pytest.approx(1.0, abs=0.06)
    assert any('trimmed' in note for note in result.notes)


def test_variable_frame_rate_and_start_time_survive(upscaler, tmp_path):
    src = str(tmp_path / 'vfr.mkv')
    with av.open(src, 'w') as out:
        video = out.add_stream('libx264', rate=10)
        video.width, video.height, video.pix_fmt = W, H, 'yuv420p'
        video.time_base = video.codec_context.time_base = fractions.Fraction(1, 1000)
        img = _photo('astronaut.png')
        for i, t in enumerate([500, 650, 700, 850, 900, 1050, 1100, 1250]):
            frame = av.VideoFrame.from_ndarray(np.roll(img, i, axis=1), format='bgr24')
            frame.pts = t
            out.mux(video.encode(frame))
        out.mux(video.encode())
    result = upscale_video(upscaler, src, str(tmp_path / 'vfr_out.mkv'))
    assert result.audio == 'none'
    assert probe(str(tmp_path / 'vfr_out.mkv'))[4] == probe(src)[4] == [500, 650, 700, 850, 900, 1050, 1100, 1250]


def test_audio_reencoded_where_the_container_does_not_take_it(upscaler, clip, tmp_path):
    out = str(tmp_path / 'clip.webm')  # WebM takes no AAC: Opus
    result = upscale_video(upscaler, clip, out, start=0, duration=0.5)
    frames, size, _, _, _, audio_s = probe(out)
    assert result.audio == 're-encoded (libopus)' and frames == FPS // 2 and size == (4 * W, 4 * H)
    assert audio_s == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize('ext', ['mp4', 'mkv'])
def test_truncated_video_is_refused_and_leaves_no_output(upscaler, tmp_path, ext):
    whole = make_video(tmp_path / f'whole.{ext}')
    broken = str(tmp_path / f'broken.{ext}')
    with open(whole, 'rb') as f:
        data = f.read()
    with open(broken, 'wb') as f:
        f.write(data[:len(data) // 2])
    out = str(tmp_path / f'broken_out.{ext}')
    with pytest.raises(ValueError, match='broken') as err:
        upscale_video(upscaler, broken, out)
    assert isinstance(err.value, VideoError) and broken in str(err.value) and broken not in err.value.reason
    assert _leftovers(tmp_path, 'broken_out') == []


def test_interrupted_run_leaves_no_file(upscaler, clip, tmp_path):
    def stop(done, total):
        if done == 5:
            raise KeyboardInterrupt

    out = str(tmp_path / 'stopped.mp4')
    with pytest.raises(KeyboardInterrupt):
        upscale_video(upscaler, clip, out, progress=stop)
    assert os.listdir(tmp_path) == []  # neither the final name nor the hidden partial file


def test_animated_gif_stays_animated(upscaler, tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    base = _photo('coffee.png', 32, 24)[:, :, ::-1]
    frames = [Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))
              for _ in range(5)]
    src, durations = str(tmp_path / 'anim.gif'), [100, 200, 100, 150, 100]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    frames[0].save(str(tmp_path / 'still.gif'))
    assert is_video_file(src) and not is_video_file(str(tmp_path / 'still.gif'))

    out = str(tmp_path / output_name(src))
    result = upscale_video(upscaler, src, out)
    assert out.endswith('anim_out.gif') and result.frames == 5 and result.audio == 'none'
    with Image.open(out) as im:
        assert im.n_frames == 5 and im.size == (128, 96)
        got = []
        for k in range(im.n_frames):
            im.seek(k)
            got.append(im.info['duration'])
    assert got == durations


@pytest.mark.parametrize('loop', [0, 3, None])
def test_animated_gif_plays_as_often_as_its_input(upscaler, tmp_path, loop):
    from PIL import Image
    frames = [Image.fromarray(_photo(name, 16, 12)[:, :, ::-1]) for name in ('coffee.png', 'rocket.png')]
    src = str(tmp_path / 'anim.gif')
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, **({} if loop is None else {'loop': loop}))
    upscale_video(upscaler, src, str(tmp_path / 'out.gif'))
    with Image.open(str(tmp_path / 'out.gif')) as im:
        assert im.info.get('loop') == loop


def _animated_webp(path, frames=12, cut=6, duration=80, loop=0):
    """An animated WebP of two shots (coffee, then rocket), fresh noise in each frame."""
    from PIL import Image
    rng = np.random.default_rng(1)
    shots = _photo('coffee.png', 32, 24)[:, :, ::-1], _photo('rocket.png', 32, 24)[:, :, ::-1]
    images = [Image.fromarray(np.clip(shots[i >= cut] + rng.normal(0, 3, shots[0].shape), 0, 255).astype(np.uint8))
              for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=loop, lossless=True)
    return str(path)


def test_animated_webp_stays_animated_with_its_shots_timing_and_loop(upscaler, tmp_path):
    from PIL import Image
    src = _animated_webp(tmp_path / 'anim.webp', loop=2)
    Image.fromarray(_photo('coffee.png', 32, 24)).save(str(tmp_path / 'still.webp'))
    assert is_video_file(src) and not is_video_file(str(tmp_path / 'still.webp'))  # a still WebP is an image

    recording = Recording(upscaler)
    out = str(tmp_path / output_name(src))
    result = upscale_video(recording, src, out)
    assert out.endswith('anim_out.webp') and result.frames == 12 and result.shots == [0, 6] and result.audio == 'none'
    assert all(torch.equal(recording.idrs[i], recording.idrs[0]) for i in range(6))
    assert not torch.equal(recording.idrs[6], recording.idrs[0])
    with Image.open(out) as im:
        assert im.n_frames == 12 and im.size == (128, 96) and im.info['loop'] == 2
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            im.load()
            durations.append(im.info['duration'])
            assert np.asarray(im.convert('RGB')).std() > 10  # a picture, not a blank frame
    assert durations == [80] * 12
    assert sorted(os.listdir(tmp_path)) == ['anim.webp', 'anim_out.webp', 'still.webp']


def test_a_truncated_animated_webp_is_one_error_and_no_output(upscaler, tmp_path):
    src = _animated_webp(tmp_path / 'anim.webp')
    data = open(src, 'rb').read()
    cut = tmp_path / 'cut.webp'
    cut.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(VideoError, match=r'cut\.webp'):
        upscale_video(upscaler, str(cut), str(tmp_path / 'cut_out.webp'))
    assert not (tmp_path / 'cut_out.webp').exists() and _leftovers(tmp_path, 'partial') == []


def test_names_and_options(upscaler, clip, tmp_path, monkeypatch):
    assert output_name('/a/b/clip.MP4') == 'clip_out.mp4'
    assert output_name('old.avi', 'x4') == 'old_x4.mkv'
    assert is_video_name('a.webm') and is_video_name('a.MOV') and not is_video_name('a.png')
    assert not is_video_name('.a.mp4.partial-1.mp4')
    with pytest.raises(OptionError, match='idr_mode'):
        upscale_video(upscaler, clip, str(tmp_path / 'x.mp4'), idr_mode='per-scene')
    with pytest.raises(OptionError, match='must end in'):
        upscale_video(upscaler, clip, str(tmp_path / 'x.png'))
    with pytest.raises(OptionError, match='overwrite'):
        upscale_video(upscaler, clip, clip)
    with pytest.raises(VideoError, match='not a video'):
        (tmp_path / 'text.mp4').write_text('hello')
        upscale_video(upscaler, str(tmp_path / 'text.mp4'), str(tmp_path / 'y.mp4'))
    monkeypatch.setitem(sys.modules, 'av', None)
    with pytest.raises(OptionError, match=r"pip install 'kdsr\[video\]'"):
        require_av()


def test_kdsr_upscale_does_videos_beside_images(tmp_path):
    from conftest import run_tool
    folder = tmp_path / 'in'
    (folder / 'sub').mkdir(parents=True)
    make_video(folder / 'clip.mp4')
    whole = make_video(tmp_path / 'whole.mkv')
    with open(whole, 'rb') as f:
        data = f.read()
    (folder / 'sub' / 'broken.mkv').write_bytes(data[:len(data) // 2])
    cv2.imwrite(str(folder / 'photo.png'), _photo('astronaut.png'))
    model = save_student(tmp_path / 'm.pth')
    out = tmp_path / 'out'
    proc = run_tool('kdsr-upscale', '-i', folder, '-o', out, '-m', model, '--idr', 'per-shot', check=1)
    assert '2 written' in proc.stdout and '1 failed' in proc.stdout
    failed = [ln for ln in proc.stderr.splitlines() if 'failed' in ln]
    assert len(failed) == 1 and failed[0].count('broken.mkv') == 1  # named once, the rest went on
    frames, size, rate, _, _, audio_s = probe(str(out / 'clip_out.mp4'))
    assert frames == FPS * SECONDS and size == (4 * W, 4 * H) and rate == FPS and audio_s == pytest.approx(2, abs=0.1)
    assert cv2.imread(str(out / 'photo_out.png')).shape == (4 * H, 4 * W, 3)
    assert sorted(os.listdir(out)) == ['clip_out.mp4', 'photo_out.png']  # no partial, claim or empty folder
    again = run_tool('kdsr-upscale', '-i', folder, '-o', out, '-m', model, check=1)
    assert '0 written, 2 skipped' in again.stdout
    bad = run_tool('kdsr-upscale', '-i', folder, '-o', out, '-m', model, '--duration', '0', check=2)
    assert bad.stderr.strip().splitlines()[-1].startswith('kdsr-upscale: error: --duration 0')


def _frames(path):
    with av.open(path) as c:
        return [f.to_ndarray(format='bgr24') for f in c.decode(c.streams.video[0])]


def test_overlapped_decode_and_encode_write_the_same_video_a_few_frames_apart(upscaler, tmp_path, monkeypatch):
    import threading
    import time

    import kdsr_model.video as video
    clip = make_video(tmp_path / 'clip.mkv', codec='ffv1', audio='flac')
    plain = upscale_video(upscaler, clip, str(tmp_path / 'plain.mkv'), video_codec='ffv1', overlap=False)
    assert 'wait' not in plain.timings

    decoded, ahead = [], []
    to_bgr = video._to_bgr

    def counting(frame, *args):
        decoded.append(frame.pts)
        return to_bgr(frame, *args)

    class Slow(Recording):  # the upscaler is the slow stage: the decoder must not race ahead
        def enhance(self, img, idr=None):
            ahead.append(len(decoded) - base[0] - len(self.idrs) - 1)
            time.sleep(0.01)
            return super().enhance(img, idr)

    transcode, base = video._transcode, []

    def pass3(*args):
        base.append(len(decoded))  # frames decoded by the analysis passes
        return transcode(*args)

    monkeypatch.setattr(video, '_to_bgr', counting)
    monkeypatch.setattr(video, '_transcode', pass3)
    threads = threading.active_count()
    result = upscale_video(Slow(upscaler), clip, str(tmp_path / 'overlap.mkv'), video_codec='ffv1')
    assert result.frames == plain.frames == FPS * SECONDS and result.audio == plain.audio == 'copied (flac)'
    assert all(np.array_equal(a, b) for a, b in zip(_frames(str(tmp_path / 'overlap.mkv')),
                                                       _frames(str(tmp_path / 'plain.mkv'))))
    assert probe(str(tmp_path / 'overlap.mkv')) == probe(str(tmp_path / 'plain.mkv'))
    assert max(ahead) <= video.AHEAD + 1 and max(ahead) >= 1  # decoded ahead, but a few frames only
    assert result.timings['wait'] >= 0 and threading.active_count() == threads  # both threads ended


@pytest.mark.parametrize('where', ['encode', 'upscale'])
def test_a_failure_in_either_thread_stops_the_run_and_leaves_no_output(upscaler, clip, tmp_path, monkeypatch, where):
    import threading

    import kdsr_model.video as video
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise (OSError(28, 'No space left on device') if where == 'encode' else KeyboardInterrupt())
        return original(self, *args, **kwargs)

    cls = video._VideoWriter if where == 'encode' else Recording
    name = 'frame' if where == 'encode' else 'enhance'
    original = getattr(cls, name)
    monkeypatch.setattr(cls, name, failing)
    threads = threading.active_count()
    out = tmp_path / 'out.mp4'
    with pytest.raises(OSError if where == 'encode' else KeyboardInterrupt):
        upscale_video(Recording(upscaler), clip, str(out))
    assert not out.exists() and _leftovers(tmp_path, '.partial') == [] and os.listdir(tmp_path) == []
    assert threading.active_count() == threads
    assert len(calls) <= 5 + video.AHEAD + 1  # stopped within a few frames of the failure


def _make_clip(path, codec='libx264', pix_fmt='yuv420p', frames=6, options=None, flags=None):
    """A short one-shot clip with fine gradients (so that 10-bit precision shows)."""
    base = _photo('coffee.png').astype(np.float32)
    with av.open(str(path), 'w') as out:
        stream = out.add_stream(codec, rate=FPS, options=options or {})
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        if flags:
            stream.codec_context.flags |= flags
        for i in range(frames):
            img = np.clip((base + i) * 257, 0, 65535).astype(np.uint16)
            frame = av.VideoFrame.from_ndarray(img, format='bgr48le').reformat(format=pix_fmt)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return str(path)


def test_10_bit_video_stays_10_bit_where_the_encoder_can(upscaler, tmp_path):
    src = _make_clip(tmp_path / 'deep.mkv', pix_fmt='yuv420p10le', options={'crf': '4'})
    out = str(tmp_path / 'deep_out.mkv')
    result = upscale_video(upscaler, src, out)
    assert result.notes == [] and result.frames == 6
    with av.open(out) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.pix_fmt == 'yuv420p10le'
        luma = next(c.decode(stream)).to_ndarray()[:4 * H]  # the 10-bit Y plane
    assert luma.max() > 255 and (luma % 4 != 0).mean() > 0.5  # 10-bit precision, not 8 bits shifted up

    webm = str(tmp_path / 'deep_out.webm')  # this VP9 build is 8-bit only: written as 8-bit, said so
    result = upscale_video(upscaler, src, webm)
    assert result.notes == ['10-bit input written as 8-bit: the libvpx-vp9 encoder here has no 10-bit format '
                            '(libx264 and libx265 do: --video_codec)']
    with av.open(webm) as c:
        assert c.streams.video[0].codec_context.pix_fmt == 'yuv420p'


def test_8_bit_video_stays_8_bit(upscaler, clip, tmp_path):
    out = str(tmp_path / 'out.mp4')
    upscale_video(upscaler, clip, out)
    with av.open(out) as c:
        assert c.streams.video[0].codec_context.pix_fmt == 'yuv420p'


def test_interlaced_video_gets_a_notice(upscaler, tmp_path):
    src = _make_clip(tmp_path / 'tv.mkv', codec='mpeg2video', options={'b': '2M'},
                     flags=av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me)
    with av.open(src) as c:
        assert next(c.decode(video=0)).interlaced_frame
    result = upscale_video(upscaler, src, str(tmp_path / 'tv_out.mkv'))
    assert any(n.startswith('interlaced input: frames are upscaled as progressive pictures') for n in result.notes)
    assert result.frames == 6


def _multi_stream_clip(tmp_path):
    """An mkv with non-square pixels (SAR 4:3), a subtitle stream (SubRip) and two audio streams."""
    srt = tmp_path / 'subs.srt'
    srt.write_text('1\n00:00:00,000 --> 00:00:00,400\nhello\n\n2\n00:00:00,500 --> 00:00:00,900\nworld\n')
    path = str(tmp_path / 'multi.mkv')
    with av.open(str(srt)) as subs, av.open(path, 'w') as out:
        video = out.add_stream('libx264', rate=FPS, options={'crf': '10'})
        video.width, video.height, video.pix_fmt = W, H, 'yuv420p'
        video.codec_context.sample_aspect_ratio = fractions.Fraction(4, 3)
        text = out.add_stream_from_template(subs.streams.subtitles[0])
        sounds = [out.add_stream(codec, rate=SAMPLE_RATE) for codec in ('aac', 'libopus')]
        for sound in sounds:
            sound.layout = 'mono'
        for i in range(FPS):
            frame = av.VideoFrame.from_ndarray(_photo('coffee.png'), format='bgr24')
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        for packet in subs.demux(subs.streams.subtitles[0]):
            if packet.size:
                packet.stream = text
                out.mux(packet)
        for sound in sounds:
            _write_sine(out, sound, 1.0)
    return path


def _subtitles(path):
    with av.open(path) as c:
        return [(bytes(p), p.pts * p.time_base, p.duration * p.time_base) for p in c.demux(c.streams.subtitles[0])
                if p.size]


def test_every_audio_and_subtitle_stream_and_the_pixel_aspect_are_kept(upscaler, tmp_path):
    src = _multi_stream_clip(tmp_path)
    out = str(tmp_path / output_name(src))
    result = upscale_video(upscaler, src, out)
    assert result.notes == [] and result.audio == 'copied (aac); copied (opus)'
    assert result.streams == ['subtitle #1: copied (srt)', 'audio #2: copied (aac)', 'audio #3: copied (opus)']
    with av.open(out) as c:
        assert [(s.type, s.codec_context.name) for s in c.streams] == [
            ('video', 'h264'), ('subtitle', 'srt'), ('audio', 'aac'), ('audio', 'opus')]
        assert c.streams.video[0].sample_aspect_ratio == fractions.Fraction(4, 3)
        assert (c.streams.video[0].width, c.streams.video[0].height) == (4 * W, 4 * H)
    assert _subtitles(out) == _subtitles(src) == [(b'hello', 0, fractions.Fraction(2, 5)),
                                                 (b'world', fractions.Fraction(1, 2), fractions.Fraction(2, 5))]

    preview = str(tmp_path / 'preview.mkv')  # a window from 0.45 s: the second line, shifted to the start
    upscale_video(upscaler, src, preview, start=0.45)
    assert [(text, t) for text, t, _ in _subtitles(preview)] == [(b'world', fractions.Fraction(1, 20))]

    mp4 = str(tmp_path / 'multi_out.mp4')  # MP4 holds no SubRip: said, and the rest goes on
    result = upscale_video(upscaler, src, mp4)
    assert result.notes == ['subtitle stream #1 (srt) dropped: mp4 cannot hold it (an mkv output can: -o with .mkv, '
                            'or convert it first)']
    with av.open(mp4) as c:
        assert [s.type for s in c.streams] == ['video', 'audio', 'audio']


def _transparent_frames(n=3):
    """RGBA frames: a box of changing colour on a transparent background (a sticker)."""
    from PIL import Image
    frames = []
    for i in range(n):
        a = np.full((24, 32, 4), (255, 255, 255, 0), np.uint8)  # (libwebp drops an alpha of only black pixels)
        a[4:20, 4:28] = (200, 60 * i, 30, 255)
        frames.append(Image.fromarray(a, 'RGBA'))
    return frames


@pytest.mark.parametrize('ext', ['gif', 'webp'])
def test_animated_gif_and_webp_keep_their_transparency(tmp_path, ext):
    from PIL import Image
    up = KDSRUpscaler(device='cpu', bf16=False)  # the built-in model: a random net's alpha is noise
    frames = _transparent_frames()
    src = str(tmp_path / f'sticker.{ext}')
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, loop=0,
                   **({'disposal': 2} if ext == 'gif' else {'lossless': True}))
    with Image.open(src) as im:
        assert im.mode in ('RGBA', 'P') and 'A' in im.convert('RGBA').getbands()
    out = str(tmp_path / f'sticker_out.{ext}')
    result = upscale_video(up, src, out)
    assert result.frames == 3 and result.notes == []
    # the box's inside and the band above it, 8 HR pixels from its edge (the net's alpha rings a little there)
    inside, outside = (slice(24, 72), slice(24, 104)), (slice(0, 8), slice(0, 128))
    with Image.open(out) as im:
        for k in range(3):
            im.seek(k)
            rgba = np.asarray(im.convert('RGBA'))
            assert rgba.shape == (96, 128, 4)
            assert (rgba[outside][..., 3] <= 16).all() and (rgba[inside][..., 3] >= 230).all()
            assert np.abs(rgba[inside][..., :3].astype(int).mean((0, 1)) - (200, 60 * k, 30)).max() < 8


def test_transparency_into_a_video_format_is_dropped_with_a_note(upscaler, tmp_path):
    frames = _transparent_frames()
    src = str(tmp_path / 'sticker.gif')
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, loop=0, disposal=2)
    shapes = []

    class Shapes(Recording):
        def enhance(self, img, idr=None):
            shapes.append(img.shape)
            return super().enhance(img, idr)

    result = upscale_video(Shapes(upscaler), src, str(tmp_path / 'sticker.mp4'))
    assert result.notes == ['transparency dropped: libx264 keeps none (GIF and WebP outputs do)']
    assert shapes == [(24, 32, 3)] * 3  # no alpha upscaled only to be dropped


@pytest.mark.parametrize('loop,plays', [(None, 1), (0, 0), (3, 4)])
def test_a_gif_into_webp_plays_as_often(upscaler, tmp_path, loop, plays):
    from PIL import Image
    frames = [Image.fromarray(_photo(name, 16, 12)[:, :, ::-1]) for name in ('coffee.png', 'rocket.png')]
    src = str(tmp_path / 'anim.gif')  # GIF's loop counts repeats: loop 3 plays 4 times
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, **({} if loop is None else {'loop': loop}))
    upscale_video(upscaler, src, str(tmp_path / 'out.webp'))
    with Image.open(str(tmp_path / 'out.webp')) as im:
        assert im.info['loop'] == plays  # WebP's counts plays (0: forever)
