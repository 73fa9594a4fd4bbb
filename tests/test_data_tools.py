"""kdsr-prepare and kdsr-degrade on real images on disk."""
import hashlib
import importlib.util
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from kdsr_model.degrade import make_test_set
from kdsr_model.errors import OptionError
from kdsr_model.prepare_data import crop_positions, prepare
from conftest import PHOTO
from conftest import BIN, REPO

SAMPLES = os.path.join(REPO, 'datasets', 'samples')


def test_crop_positions_follow_basicsr_rule():
    assert crop_positions(1000, 400, 200, 0) == [0, 200, 400, 600]  # 600 + 400 == 1000: no extra crop
    assert crop_positions(1020, 400, 200, 0) == [0, 200, 400, 600, 620]  # border crop for the 20 px left
    assert crop_positions(1020, 400, 200, 50) == [0, 200, 400, 600]  # remainder 20 <= thresh_size
    assert crop_positions(300, 400, 200, 0) == []


def test_prepare_skips_bad_files_and_never_overwrites(tmp_path, photos):
    hr = tmp_path / 'hr'
    hr.mkdir()
    img = cv2.imread(os.path.join(photos, 'val', PHOTO))
    cv2.imwrite(str(hr / 'garden.png'), img)
    (hr / 'empty.png').write_bytes(b'')
    cv2.imwrite(str(hr / 'tiny.png'), img[:100, :100])
    skipped = []
    names, failures = prepare(str(hr), str(tmp_path / 'out'), crop_size=400, step=200, make_lmdb=True,
                              on_skip=lambda path, reason: skipped.append((path, reason)))
    assert skipped == [(str(hr / 'empty.png'), 'not a readable image'),
                       (str(hr / 'tiny.png'), '100x100 is smaller than --crop_size 400')]
    h, w = img.shape[:2]
    assert len(names) == len(crop_positions(h, 400, 200, 0)) * len(crop_positions(w, 400, 200, 0))
    assert sorted(f for f, _ in failures) == ['empty.png', 'tiny.png']
    assert (tmp_path / 'out' / 'meta_info.txt').read_text().split() == names
    crop = cv2.imread(str(tmp_path / 'out' / 'sub' / names[-1]))
    assert np.array_equal(crop, img[h - 400:, w - 400:])  # the last crop sits on the bottom-right border
    assert (tmp_path / 'out' / 'sub.lmdb' / 'data.mdb').is_file()
    assert not list(tmp_path.glob('out/*partial*'))
    proc = subprocess.run([os.path.join(BIN, 'kdsr-prepare'), '--hr', str(hr), '--out', str(tmp_path / 'out')],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and 'exists; choose another --out' in proc.stderr


def test_prepare_scales_add_downscaled_sub_images(tmp_path, photos):
    hr = tmp_path / 'hr'
    hr.mkdir()
    img = cv2.imread(os.path.join(photos, 'val', PHOTO))
    cv2.imwrite(str(hr / 'garden.png'), img)
    h, w = img.shape[:2]
    names, failures = prepare(str(hr), str(tmp_path / 'out'), crop_size=400, step=200, scales=(1, 0.5, 0.25))
    assert failures == []
    full = [n for n in names if '_x' not in n]
    half = [n for n in names if n.startswith('garden_x0.5_s')]
    quarter = [n for n in names if '_x0.25_' in n]
    assert len(full) == len(crop_positions(h, 400, 200, 0)) * len(crop_positions(w, 400, 200, 0))
    small = cv2.resize(img, (round(w / 2), round(h / 2)), interpolation=cv2.INTER_AREA)
    side = min(400, *small.shape[:2])
    assert len(half) == len(crop_positions(small.shape[0], side, 200, 0)) * len(crop_positions(small.shape[1], side, 200, 0))
    first = cv2.imread(str(tmp_path / 'out' / 'sub' / half[0]))
    assert first.shape[:2] == (side, side) and np.array_equal(first, small[:side, :side])
    assert len(names) == len(full) + len(half) + len(quarter)
    assert min(h, w) / 4 < 192 and quarter == []  # too small to crop 48x48 LR patches x4 from: left out
    for bad in ((1, 1.5), (1, 0.5, 0.5)):
        with pytest.raises(OptionError, match=r'--scales [\d.,]+: each must be in \(0, 1\], each once'):
            prepare(str(hr), str(tmp_path / 'out2'), scales=bad)
    assert not (tmp_path / 'out2').exists()
    proc = subprocess.run([os.path.join(BIN, 'kdsr-prepare'), '--hr', str(hr), '--out', str(tmp_path / 'out3'),
                           '--scales', '1,half'], capture_output=True, text=True)
    assert proc.returncode != 0 and '--scales 1,half: expected numbers' in proc.stderr
    assert not (tmp_path / 'out3').exists()


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_degraded_test_set_is_seeded_and_sized(tmp_path):
    a = make_test_set(os.path.join(SAMPLES, 'train'), str(tmp_path / 'a'), scale=4, seed=3, gt_size=256)
    make_test_set(os.path.join(SAMPLES, 'train'), str(tmp_path / 'b'), scale=4, seed=3, gt_size=256)
    make_test_set(os.path.join(SAMPLES, 'train'), str(tmp_path / 'c'), scale=4, seed=4, gt_size=256)
    assert a == ['astronaut.png', 'coffee.png', 'rocket.png']
    assert _digest(tmp_path / 'a' / 'lq') == _digest(tmp_path / 'b' / 'lq')
    assert _digest(tmp_path / 'a' / 'lq') != _digest(tmp_path / 'c' / 'lq')
    for name in a:
        assert cv2.imread(str(tmp_path / 'a' / 'gt' / name)).shape == (256, 256, 3)
        assert cv2.imread(str(tmp_path / 'a' / 'lq' / name)).shape == (64, 64, 3)


def test_degrade_refuses_to_overwrite(tmp_path):
    (tmp_path / 'gt').mkdir()
    with pytest.raises(OptionError, match="gt exists; choose another --out"):
        make_test_set(os.path.join(SAMPLES, 'train'), str(tmp_path))


@pytest.mark.skipif(shutil.which('dpkg-deb') is None, reason='the script unpacks .deb files with dpkg-deb (Debian tools)')
def test_texture_select_photos_prepares_as_the_benchmark_photos_and_keeps_existing_files(tmp_path):
    """scripts/texture_select_photos.py's preparation (given the .deb files with --debs: nothing is
    downloaded): Lanczos to a long side of 768, sides divisible by 12, RGB PNG; photos already in
    the output folder are not rewritten, and a missing package is a one-line error."""
    from conftest import error_lines, run_py
    from PIL import Image
    script = os.path.join(REPO, 'scripts', 'texture_select_photos.py')
    debs, root = tmp_path / 'debs', tmp_path / 'root'
    debs.mkdir()
    rng = np.random.default_rng(0)
    spec = importlib.util.spec_from_file_location('texture_select_photos', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for pkg in sorted({v[0] for v in module.PHOTOS.values()}):  # a real .deb per package holding its photos
        for name, (p, inner, *_) in module.PHOTOS.items():
            if p == pkg:
                dest = root / pkg / inner
                dest.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (1003, 1601, 3), dtype=np.uint8)).save(dest, quality=95)
        (root / pkg / 'DEBIAN').mkdir()
        (root / pkg / 'DEBIAN' / 'control').write_text(
            f'Package: {pkg}\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n')
        subprocess.run(['dpkg-deb', '--build', str(root / pkg), str(debs / f'{pkg}_1_all.deb')], check=True,
                       capture_output=True)
    out = tmp_path / 'select'
    out.mkdir()
    kept = out / 'Path.png'
    kept.write_bytes(b'mine')
    run_py(args=[script, str(out), '--debs', str(debs)])
    assert kept.read_bytes() == b'mine'
    made = sorted(p.name for p in out.iterdir())
    assert made == sorted(n + '.png' for n in module.PHOTOS)
    img = cv2.imread(str(out / 'Kite.png'), cv2.IMREAD_UNCHANGED)
    assert img.shape == (480, 768, 3)  # 1601 x 1003 -> 768 x 481, cropped to multiples of 12
    empty = tmp_path / 'empty'
    empty.mkdir()
    bad = run_py(args=[script, str(tmp_path / 'other'), '--debs', str(empty)], check=False)
    assert bad.returncode != 0 and len(error_lines(bad)) == 1 and 'no lomiri-wallpapers-16.04_*.deb' in bad.stderr
    assert not (tmp_path / 'other').exists()  # nothing made when nothing could be
