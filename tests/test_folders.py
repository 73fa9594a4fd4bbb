"""kdsr-upscale on folder trees: subfolders mirrored, gray + alpha PNGs kept, and claims that let
several processes share one folder."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from io import BytesIO

import cv2
import numpy as np
import pytest

from conftest import BIN, save_student
from kdsr_model import claims, io


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return save_student(tmp_path_factory.mktemp('m') / 'm.pth')


def _image(path, seed=0, size=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)


def _tree(folder):
    """Every file under ``folder`` as a relative path, sorted."""
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files)


def _counts(stdout):
    """written, skipped, claimed and failed from a run's summary line."""
    line = next(line for line in stdout.splitlines() if re.match(r'kdsr-upscale: \d+ written', line))
    claimed = re.search(r'(\d+) claimed by another process', line)
    return (int(re.search(r'(\d+) written', line)[1]), int(re.search(r'(\d+) skipped', line)[1]),
            int(claimed[1]) if claimed else 0, int(re.search(r'(\d+) failed', line)[1]))


# ----------------------------------------------------------------- folder trees


def test_subfolders_are_mirrored_and_only_outputs_make_folders(tmp_path, model, upscale):
    src, out = tmp_path / 'in', tmp_path / 'out'
    for i, name in enumerate(['top.png', 'a/photo.png', 'a/b/photo.png', 'a/b/photo.jpg', 'a/b/c/deep.png',
                              '.hidden/h.png', 'sets.partial/p.png', 'a/.cache/h.png']):
        _image(src / name, seed=i)
    (src / 'empty' / 'sub').mkdir(parents=True)
    (src / 'bad').mkdir()
    (src / 'bad' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
    proc = upscale('-i', src, '-o', out, '-m', model, check=1)
    assert _counts(proc.stdout) == (5, 0, 0, 1)
    assert f'failed {src / "bad" / "broken.png"}' in proc.stderr
    # shared stems are told apart per folder: a/photo.png alone keeps the plain name
    assert _tree(out) == ['a/b/c/deep_out.png', 'a/b/photo_jpg_out.jpg', 'a/b/photo_png_out.png', 'a/photo_out.png',
                          'top_out.png']
    assert sorted(os.listdir(out)) == ['a', 'top_out.png']  # no empty/, bad/ (failed), hidden or partial folders
    assert cv2.imread(str(out / 'a' / 'b' / 'c' / 'deep_out.png')).shape == (64, 64, 3)
    proc = upscale('-i', src, '-o', out, '-m', model, check=1)
    assert _counts(proc.stdout) == (0, 5, 0, 1)

    flat = tmp_path / 'flat'
    proc = upscale('-i', src, '-o', flat, '-m', model, '--no_recursive', check=0)
    assert _counts(proc.stdout) == (1, 0, 0, 0)
    assert _tree(flat) == ['top_out.png']


def test_symlink_loops_end_and_each_image_is_done_once(tmp_path, model, upscale):
    src, out = tmp_path / 'in', tmp_path / 'out'
    _image(src / 'x.png')
    _image(src / 'sub' / 'y.png', seed=1)
    _image(tmp_path / 'elsewhere' / 'z.png', seed=2)
    os.symlink('..', src / 'sub' / 'loop')  # in/sub/loop/sub/loop/... without end
    os.symlink(src / 'sub', src / 'alias')  # leads back inside -i: its images are listed already
    os.symlink(tmp_path / 'elsewhere', src / 'ext')  # leads outside: followed
    os.symlink(tmp_path / 'elsewhere', src / 'sub' / 'ext2')  # the same real folder again: not followed
    os.symlink(src, tmp_path / 'elsewhere' / 'back')  # and back into -i from there: not followed
    proc = upscale('-i', src, '-o', out, '-m', model, check=0)
    assert _counts(proc.stdout) == (3, 0, 0, 0)
    assert _tree(out) == ['ext/z_out.png', 'sub/y_out.png', 'x_out.png']


def test_an_output_folder_inside_the_input_is_never_walked(tmp_path, model, upscale):
    src = tmp_path / 'in'
    _image(src / 'x.png')
    _image(src / 'a' / 'y.png', seed=1)
    results = src / 'results'
    upscale('-i', src, '-o', results, '-m', model, check=0)
    assert _tree(results) == ['a/y_out.png', 'x_out.png']
    proc = upscale('-i', src, '-o', results, '-m', model, check=0)
    assert _counts(proc.stdout) == (0, 2, 0, 0)
    # reached through a symlink too, the output folder is the output folder
    os.symlink(results, tmp_path / 'link')
    proc = upscale('-i', src, '-o', tmp_path / 'link', '-m', model, check=0)
    assert _counts(proc.stdout) == (0, 2, 0, 0)
    assert _tree(results) == ['a/y_out.png', 'x_out.png']  # nothing like x_out_out.png


# ----------------------------------------------------------------- gray + alpha PNGs


def test_the_gray_alpha_encoder_round_trips():
    from PIL import Image
    rng = np.random.default_rng(0)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        img = rng.integers(0, top + 1, (7, 5, 2)).astype(dtype)
        data = io.encode_png_gray_alpha(img)
        assert data[25] == io.PNG_GRAY_ALPHA and data[24] == (16 if dtype == np.uint16 else 8)
        back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert back.dtype == dtype and back.shape == (7, 5, 4)
        assert (back[:, :, :3] == img[:, :, :1]).all() and (back[:, :, 3] == img[:, :, 1]).all()
        with Image.open(BytesIO(data)) as im:  # Pillow gives 16-bit gray + alpha as 8-bit RGBA
            assert im.mode == ('LA' if dtype == np.uint8 else 'RGBA') and im.size == (5, 7)
            pil = np.asarray(im)
            assert (pil[:, :, 0] == img[:, :, 0] >> (8 if dtype == np.uint16 else 0)).all()
            assert (pil[:, :, -1] == img[:, :, 1] >> (8 if dtype == np.uint16 else 0)).all()


def test_gray_alpha_png_stays_gray_alpha_at_its_bit_depth(tmp_path, model, upscale):
    from PIL import Image
    src, out = tmp_path / 'in', tmp_path / 'out'
    src.mkdir()
    gray = np.tile(np.linspace(0, 255, 16), (16, 1)).astype(np.uint8)
    alpha = np.full((16, 16), 255, np.uint8)
    alpha[:, 8:] = 60  # opaque left half, translucent right half
    Image.fromarray(np.dstack([gray, alpha]), 'LA').save(src / 'la8.png')
    la16 = np.dstack([gray, alpha]).astype(np.uint16) * 257
    (src / 'la16.png').write_bytes(io.encode_png_gray_alpha(la16))
    assert io.png_header(str(src / 'la8.png')) == (io.PNG_GRAY_ALPHA, 8)
    assert io.png_header(str(src / 'la16.png')) == (io.PNG_GRAY_ALPHA, 16)
    upscale('-i', src, '-o', out, '-m', model, '--alpha_upsampler', 'bicubic', check=0)
    upscale('-i', src, '-o', out, '-m', model, '--alpha_upsampler', 'bicubic', '--ext', 'tif', check=0)
    for name, depth, top in (('la8', 8, 255), ('la16', 16, 65535)):
        path = out / f'{name}_out.png'
        assert io.png_header(str(path)) == (io.PNG_GRAY_ALPHA, depth)
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img.shape == (64, 64, 4) and img.dtype == (np.uint16 if depth == 16 else np.uint8)
        assert (img[:, :16, 3] == top).all() and abs(int(img[:, 48:, 3].mean()) - 60 * top // 255) <= top // 255
        # --ext tif keeps RGBA; its gray is the gray of the PNG
        rgba = cv2.imread(str(out / f'{name}_out.tif'), cv2.IMREAD_UNCHANGED)
        assert rgba.shape == (64, 64, 4) and rgba.dtype == img.dtype
        assert np.array_equal(cv2.cvtColor(rgba[:, :, :3], cv2.COLOR_BGR2GRAY), img[:, :, 0])
        with Image.open(path) as im:
            im.load()
            assert im.mode == ('LA' if depth == 8 else 'RGBA') and im.size == (64, 64)


# ----------------------------------------------------------------- claims


def _claim(path, **owner):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({'host': io.HOST, 'started': '2025-01-01T00:00:00Z', 'token': 'theirs', **owner}))
    return path


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    """The PID of a process of this host that lives through the test (a sleeping Python)."""
    proc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_two_processes_share_a_folder_and_do_each_image_once(tmp_path, model):
    src, out = tmp_path / 'in', tmp_path / 'out'
    for i in range(8):
        _image(src / f'img{i}.png', seed=i)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [os.path.join(BIN, 'kdsr-upscale'), '-i', str(src), '-o', str(out), '-m', model]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    counts = [_counts(stdout) for stdout, _ in results]
    assert sum(c[0] for c in counts) == 8, counts  # each image upscaled by exactly one of them
    assert all(sum(c[:3]) == 8 and c[3] == 0 for c in counts), counts  # the rest skipped or claimed
    assert _tree(out) == [f'img{i}_out.png' for i in range(8)]  # no claim files left


def test_claims_of_live_and_dead_processes(tmp_path, model, upscale, live_pid):
    src, out = tmp_path / 'in', tmp_path / 'out'
    _image(src / 'a.png')
    _image(src / 'sub' / 'b.png', seed=1)
    live = _claim(out / '.a_out.claim', pid=live_pid)
    dead_pid = _dead_pid()
    dead = _claim(out / 'sub' / '.b_out.claim', pid=dead_pid)
    proc = upscale('-i', src, '-o', out, '-m', model, check=0)
    assert _counts(proc.stdout) == (1, 0, 1, 0)
    assert f'removed the abandoned claim {dead} of PID {dead_pid} on {io.HOST}' in proc.stderr
    assert _tree(out) == ['.a_out.claim', 'sub/b_out.png']  # a.png left to its live owner
    # another host's claim is live while it is touched, abandoned after CLAIM_STALE_S
    _claim(live, host='elsewhere.example', pid=live_pid)
    assert _counts(upscale('-i', src, '-o', out, '-m', model, check=0).stdout) == (0, 1, 1, 0)
    old = time.time() - io.CLAIM_STALE_S - 60
    os.utime(live, (old, old))
    proc = upscale('-i', src, '-o', out, '-m', model, check=0)
    assert _counts(proc.stdout) == (1, 1, 0, 0) and f'of PID {live_pid} on elsewhere.example' in proc.stderr
    assert _tree(out) == ['a_out.png', 'sub/b_out.png']


def test_taking_over_an_abandoned_claim_is_atomic(tmp_path, live_pid):
    path = _claim(tmp_path / '.x_out.claim', pid=_dead_pid())
    taker = claims.Claims()
    held, owner = taker.take(str(path))
    assert held and owner['token'] == 'theirs'
    mine = json.loads(path.read_text())
    assert mine['pid'] == os.getpid() and mine['host'] == io.HOST and mine['token'] != 'theirs'
    assert taker.take(str(tmp_path / '.y_out.claim')) == (True, None)
    taker.close()
    assert sorted(os.listdir(tmp_path)) == []
    # a live claim is left alone
    _claim(path, pid=live_pid)
    assert claims.Claims().take(str(path)) == (False, json.loads(path.read_text()))
    # judged abandoned, then replaced by a fresh claim of a faster process: that one stays
    _claim(path, pid=_dead_pid())
    identity, _ = claims._claim_record(str(path))
    os.remove(path)
    fresh = _claim(path, pid=live_pid, token='fresh').read_text()
    assert not claims._remove_if(str(path), lambda i, _: i == identity)
    assert path.read_text() == fresh and os.listdir(tmp_path) == ['.x_out.claim']


def test_overwrite_leaves_what_another_process_wrote_during_the_run(tmp_path, model, upscale):
    src, out = tmp_path / 'in', tmp_path / 'out'
    _image(src / 'a.png')
    _image(src / 'b.png', seed=1)
    upscale('-i', src, '-o', out, '-m', model, check=0)
    later = time.time() + 3600  # as if written by another process after this run began
    os.utime(out / 'a_out.png', (later, later))
    proc = upscale('-i', src, '-o', out, '-m', model, '--overwrite', check=0)
    assert _counts(proc.stdout) == (1, 0, 1, 0)
    assert os.path.getmtime(out / 'a_out.png') == later


def test_other_hosts_temporary_files_wait_until_they_are_old(tmp_path):
    mine_dead = tmp_path / f'.x.png.partial-{_dead_pid()}-{io.HOST_TAG}.png'
    legacy_dead = tmp_path / f'.y.png.partial-{_dead_pid()}.png'  # named before host tags: this host's
    theirs = tmp_path / '.z.png.partial-1-h00000000.png'
    theirs_old = tmp_path / '.w.png.partial-1-h00000000.png'
    for path in (mine_dead, legacy_dead, theirs, theirs_old):
        path.write_bytes(b'x')
    old = time.time() - io.CLAIM_STALE_S - 60
    os.utime(theirs_old, (old, old))
    io.remove_stale_partials(str(tmp_path))
    assert os.listdir(tmp_path) == [theirs.name]
    assert io.partial_path(str(tmp_path / 'a.png')).endswith(f'.a.png.partial-{os.getpid()}-{io.HOST_TAG}.png')


def test_ctrl_c_removes_the_claim_of_the_image_in_progress(tmp_path, model):
    src, out = tmp_path / 'in', tmp_path / 'out'
    for i in range(4):
        _image(src / 'sub' / f'img{i}.png', seed=i, size=600)  # about a second each: Ctrl-C lands mid-run
    proc = subprocess.Popen([os.path.join(BIN, 'kdsr-upscale'), '-i', str(src), '-o', str(out), '-m', model],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.time() + 120
    while not [f for f in _tree(tmp_path) if f.endswith('.claim')]:  # the first image is claimed
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and 'kdsr-upscale: interrupted: ' in stdout, stdout + stderr
    done = _tree(tmp_path / 'out') if out.exists() else []
    assert len(done) < 4 and all(re.fullmatch(r'sub/img\d_out\.png', f) for f in done), done  # no claim, no partial
    for f in done:
        assert cv2.imread(str(out / f)).shape == (2400, 2400, 3)
