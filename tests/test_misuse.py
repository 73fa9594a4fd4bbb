"""kdsr-upscale under bad input and misuse: one-line errors, nothing lost, nothing partial."""
import hashlib
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE_PHOTOS, error_lines, run_tool, save_student



@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return save_student(tmp_path_factory.mktemp('m') / 'small.pth')


def _photo(h=24, w=32, top=100, left=100):
    return np.ascontiguousarray(cv2.imread(SAMPLE_PHOTOS[1])[top:top + h, left:left + w])


def _bomb_png(path, side=50000):
    """A 100-byte PNG whose header claims side x side pixels."""
    def chunk(tag, data):
        return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\0' * 64)) +
                     chunk(b'IEND', b''))


def _truncated_jpeg(path):
    """A JPEG cut in its scan data: OpenCV decodes it (grey lower rows) with only a libjpeg warning."""
    ok, buf = cv2.imencode('.jpg', cv2.imread(SAMPLE_PHOTOS[2]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    path.write_bytes(buf.tobytes()[:int(len(buf) * 0.6)])
    assert cv2.imread(str(path)) is not None  # the defect this guards against


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize('flags,message', [
    (['-t', '-5'], '-t/--tile -5: must be 0 or more'),
    (['--tile_pad', '-3'], '--tile_pad -3: must be 0 or more'),
    (['--pre_pad', '-4'], '--pre_pad -4: must be 0 or more'),
    (['-s', '0'], '-s/--outscale 0: must be above 0'),
    (['-s', '-1'], '-s/--outscale -1: must be above 0'),
    (['-g', '-2'], '-g/--gpu_id -2: must be 0 or more'),
    (['--gpu-id', '-2'], '-g/--gpu_id -2: must be 0 or more'),  # Real-ESRGAN's spelling
    (['--max_pixels', '-1'], '--max_pixels -1: must be 0 or more'),
])
def test_numeric_flags_are_checked_before_any_work(tmp_path, model, flags, message, upscale):
    src = tmp_path / 'in'
    src.mkdir()
    cv2.imwrite(str(src / 'a.png'), _photo())
    proc = upscale('-i', src, '-o', tmp_path / 'out', '-m', model, *flags, check=2)
    assert proc.stderr.strip().splitlines()[-1].startswith(f'kdsr-upscale: error: {message}')  # after argparse's usage
    assert not (tmp_path / 'out').exists()


@pytest.mark.slow
def test_the_console_script_exits_2_with_one_line(tmp_path, model):
    proc = run_tool('kdsr-upscale', '-i', tmp_path / 'nowhere', '-o', tmp_path / 'out', '-m', model, check=2)
    assert error_lines(proc) == [f'kdsr-upscale: error: -i {tmp_path / "nowhere"}: no such file or folder']
    assert not (tmp_path / 'out').exists()


def test_output_folder_problems_are_one_line_before_any_work(tmp_path, model, upscale):
    src = tmp_path / 'in'
    src.mkdir()
    cv2.imwrite(str(src / 'a.png'), _photo())
    before = _digests(src)
    proc = upscale('-i', src, '-o', src, '-m', model, check=2)
    assert error_lines(proc) == [f'kdsr-upscale: error: -o {src} is the input folder; outputs would become inputs '
                                 'of the next run. Choose another -o (a folder inside -i is fine).']
    (tmp_path / 'afile').write_text('x')
    proc = upscale('-i', src, '-o', tmp_path / 'afile', '-m', model, check=2)
    assert error_lines(proc) == [f'kdsr-upscale: error: -o {tmp_path / "afile"} exists and is not a folder; '
                                 'name a folder.']
    proc = upscale('-i', src, '-o', tmp_path / 'afile' / 'sub', '-m', model, check=2)
    assert len(error_lines(proc)) == 1 and 'cannot write there' in proc.stderr
    assert _digests(src) == before
    # a folder inside the input folder is fine, and a re-run does not upscale its outputs
    upscale('-i', src, '-o', src / 'up', '-m', model, check=0)
    proc = upscale('-i', src, '-o', src / 'up', '-m', model, check=0)
    assert '0 written, 1 skipped' in proc.stdout
    assert sorted(p.name for p in (src / 'up').iterdir()) == ['a_out.png']


def test_inputs_sharing_a_stem_get_distinct_outputs(tmp_path, model, upscale):
    src = tmp_path / 'in'
    src.mkdir()
    for i, name in enumerate(['photo.png', 'photo.jpg', 'photo.JPG', 'other.png']):
        cv2.imwrite(str(src / name) if not name.endswith('.JPG') else str(src / 'tmp.jpg'), _photo(left=40 * i))
        if name.endswith('.JPG'):
            os.rename(src / 'tmp.jpg', src / name)
    proc = upscale('-i', src, '-o', tmp_path / 'out', '-m', model, '--ext', 'png', check=0)
    assert '4 written, 0 skipped' in proc.stdout
    outs = sorted(p.name for p in (tmp_path / 'out').iterdir())
    assert outs == ['other_out.png', 'photo_JPG_out.png', 'photo_jpg_out.png', 'photo_png_out.png']
    digests = _digests(tmp_path / 'out')
    assert len(set(digests.values())) == 4  # four different images, none replaced by another
    proc = upscale('-i', src, '-o', tmp_path / 'out', '-m', model, '--ext', 'png', '--overwrite',
                    check=0)
    assert '4 written' in proc.stdout and _digests(tmp_path / 'out') == digests


def test_existing_output_is_skipped_without_decoding_the_input(tmp_path, model, upscale):
    src = tmp_path / 'in'
    src.mkdir()
    (src / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 64)  # would fail to decode
    (tmp_path / 'out').mkdir()
    cv2.imwrite(str(tmp_path / 'out' / 'broken_out.png'), _photo())
    proc = upscale('-i', src, '-o', tmp_path / 'out', '-m', model, check=0)
    assert '0 written, 1 skipped' in proc.stdout and '0 failed' in proc.stdout


@pytest.mark.slow
def test_a_folder_of_good_and_bad_inputs(tmp_path, model):
    """Every kind of input in one folder: good ones written and checked, bad ones named once,
    inputs unchanged, nothing partial left, exit status 1."""
    src = tmp_path / 'in'
    src.mkdir()
    good = {
        'photo.png': _photo(),
        'photo16.png': (_photo().astype(np.uint16) * 257),
        'gray.png': cv2.cvtColor(_photo(), cv2.COLOR_BGR2GRAY),
        'alpha.png': np.dstack([_photo(), np.full((24, 32), 128, np.uint8)]),
        'other.jpg': _photo(left=50),
        'tiny.png': _photo(3, 3),  # smaller than --pre_pad
        'leaf.webp': _photo(left=150),
    }
    for name, img in good.items():
        assert cv2.imwrite(str(src / name), img)
    Image.fromarray(_photo()[:, :, ::-1]).convert('P').save(src / 'palette.png')
    good['palette.png'] = None
    bad = {'empty.png': 'empty file', 'text.jpg': 'not an image', 'bomb.png': 'a decompression bomb?',
           'cut.jpg': 'broken or truncated JPEG'}
    (src / 'empty.png').write_bytes(b'')
    (src / 'text.jpg').write_text('not a picture')
    _bomb_png(src / 'bomb.png')
    _truncated_jpeg(src / 'cut.jpg')
    (src / '.hidden.png').write_bytes(b'junk')  # hidden: not an input
    (src / 'notes.txt').write_text('not an image name')
    (src / 'sub').mkdir()
    before = _digests(src)

    proc = run_tool('kdsr-upscale', '-i', src, '-o', tmp_path / 'out', '-m', model, '--pre_pad', '10', check=1)
    assert f'{len(good)} written, 0 skipped' in proc.stdout and f'{len(bad)} failed' in proc.stdout
    lines = error_lines(proc)
    for name, reason in bad.items():
        named = [line for line in lines if os.path.join(str(src), name) in line]
        assert len(named) == 1 and reason in named[0], (name, lines)
    assert len(lines) == len(bad), lines
    assert _digests(src) == before
    out = tmp_path / 'out'
    assert not [p for p in out.iterdir() if p.name.startswith('.')]  # no partial or probe files
    for name, img in good.items():
        stem, ext = os.path.splitext(name)
        written = cv2.imread(str(out / f'{stem}_out{ext}'), cv2.IMREAD_UNCHANGED)
        src_img = cv2.imread(str(src / name), cv2.IMREAD_UNCHANGED)
        assert written is not None, name
        assert written.shape[:2] == (src_img.shape[0] * 4, src_img.shape[1] * 4), name
        assert written.dtype == src_img.dtype and written.ndim == src_img.ndim, name


# ----------------------------------------------------------------- the other tools


def _hr_folder(folder, n=2, broken=False):
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f'p{i}.png'), _photo(64, 64, left=60 * i))
    if broken:
        (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
    return _digests(folder)


def test_testset_never_writes_into_its_input_and_is_written_whole(tmp_path):
    before = _hr_folder(tmp_path / 'X' / 'HR', broken=True)
    proc = run_tool('kdsr-testset', '--hr', tmp_path / 'X' / 'HR', '--out', tmp_path / 'X', '--protocol', 'bands',
                    check=2)
    assert 'holds the --hr folder' in error_lines(proc)[-1]
    assert _digests(tmp_path / 'X' / 'HR') == before and sorted(os.listdir(tmp_path / 'X')) == ['HR']
    (tmp_path / 'used').mkdir()
    (tmp_path / 'used' / 'keep.txt').write_text('mine')
    proc = run_tool('kdsr-testset', '--hr', tmp_path / 'X' / 'HR', '--out', tmp_path / 'used', '--protocol', 'bands',
                    check=2)
    assert 'exists and is not an empty folder' in error_lines(proc)[-1]
    assert os.listdir(tmp_path / 'used') == ['keep.txt']
    # a broken image is named and left out; the rest is written, and nothing partial stays
    proc = run_tool('kdsr-testset', '--hr', tmp_path / 'X' / 'HR', '--out', tmp_path / 'set', '--protocol', 'bands',
                    check=1)
    assert [line for line in error_lines(proc) if 'broken.png' in line] == [
        f'kdsr-testset: skipped {tmp_path / "X" / "HR" / "broken.png"}: not a readable image']
    assert sorted(os.listdir(tmp_path / 'set' / 'heavy')) == ['p0.png', 'p1.png']
    assert not [p for p in os.listdir(tmp_path) if 'partial' in p]


@pytest.mark.parametrize('flags,message', [
    (['--step', '-10'], '--step -10: must be 1 or more'),
    (['--crop_size', '0'], '--crop_size 0: must be 1 or more'),
    (['--crop-size', '0'], '--crop_size 0: must be 1 or more'),
])
def test_prepare_checks_its_numbers_first(tmp_path, flags, message):
    from kdsr_model.prepare_data import main
    _hr_folder(tmp_path / 'hr')
    with pytest.raises(SystemExit) as err:
        main(['--hr', str(tmp_path / 'hr'), '--out', str(tmp_path / 'out'), *flags])
    assert err.value.code == 2
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('tool_main,extra', [('kdsr_model.prepare_data', []), ('kdsr_model.degrade', [])])
def test_missing_hr_is_one_line_and_creates_nothing(tmp_path, capsys, tool_main, extra):
    import importlib
    main = importlib.import_module(tool_main).main
    assert main(['--hr', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'out'), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'nowhere: not a folder' in err[0]
    assert not (tmp_path / 'out').exists()


def test_degrade_names_a_broken_image_before_writing(tmp_path, capsys):
    from kdsr_model.degrade import main
    _hr_folder(tmp_path / 'hr', broken=True)
    assert main(['--hr', str(tmp_path / 'hr'), '--out', str(tmp_path / 'out'), '--gt_size', '64']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'broken.png: not a readable image' in err[0]
    assert not (tmp_path / 'out').exists()


def test_eval_checks_its_output_files_before_evaluating(tmp_path, capsys):
    from kdsr_model.evaluate import main
    (tmp_path / 'old.csv').write_text('my results')
    assert main(['--lq', str(tmp_path / 'nowhere'), '--gt', str(tmp_path), '--csv', str(tmp_path / 'old.csv')]) == 2
    assert capsys.readouterr().err.strip() == (f'kdsr-eval: error: --csv {tmp_path / "old.csv"} exists; choose '
                                               'another name or add --overwrite.')
    assert (tmp_path / 'old.csv').read_text() == 'my results'
    (tmp_path / 'afile').write_text('x')
    assert main(['--lq', str(tmp_path), '--gt', str(tmp_path), '--json', str(tmp_path / 'afile' / 'r.json')]) == 2
    assert 'cannot write there' in capsys.readouterr().err


# ----------------------------------------------------------------- kdsr-train options

TINY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'options', 'tiny')


def _tiny_options(tmp_path, name='train_kdsrnet_x4TA_tiny.yml', edit=None, raw=None):
    import yaml
    samples = os.path.join(os.path.dirname(TINY), '..', 'datasets', 'samples')
    text = open(os.path.join(TINY, name)).read().replace('datasets/samples', os.path.abspath(samples))
    if raw:
        assert raw[0] in text
        text = text.replace(*raw)
    if edit:
        opt = yaml.safe_load(text)
        edit(opt)
        text = yaml.safe_dump(opt)
    path = tmp_path / 'opt.yml'
    path.write_text(text)
    return path


def _set(keys, value):
    def edit(opt):
        for key in keys[:-1]:
            opt = opt[key]
        if value is KeyError:
            del opt[keys[-1]]
        else:
            opt[keys[-1]] = value
    return edit


@pytest.mark.parametrize('edit,raw,message', [
    (None, ('scale: 4', 'scale: [4'), 'not valid YAML at line'),
    (_set(['network_g'], KeyError), None, 'network_g: missing'),
    (_set(['train', 'total_iter'], 'abc'), None, "train:total_iter: 'abc' is not an integer."),
    (_set(['datasets', 'train', 'dataroot_gt'], 'nowhere/sub'), None, 'datasets:train:dataroot_gt: nowhere/sub not found'),
    (_set(['datasets', 'train', 'batch_size_per_gpu'], 0), None, 'datasets:train:batch_size_per_gpu: 0 must be 1 or more.'),
    (_set(['datasets', 'train', 'batch_size_per_gpu'], -2), None, 'batch_size_per_gpu: -2 must be 1 or more.'),
    (_set(['network_g', 'type'], 'BlindSR_XX'), None, "network_g:type: 'BlindSR_XX' is not a registered network"),
    (_set(['model_type'], 'KDSRNetModel'), None, "model_type: 'KDSRNetModel' is not a registered model"),
    (_set(['network_g', 'n_feats'], 'sixteen'), None, "network_g:n_feats: 'sixteen' is not an integer."),
    (_set(['network_g', 'n_blocks'], 4), None, 'network_g:n_blocks: not an argument of BlindSR_TA'),
])
def test_bad_training_options_are_one_line_before_anything_is_made(tmp_path, capsys, monkeypatch, edit, raw, message):
    from kdsr_model.train import main
    opt = _tiny_options(tmp_path, edit=edit, raw=raw)
    monkeypatch.chdir(tmp_path)
    assert main(['-opt', str(opt)]) == 2  # the tools' one wrapper (kdsr_model.errors.tool)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('kdsr-train: error: ') and message in lines[0], lines
    assert sorted(os.listdir(tmp_path)) == ['opt.yml']


def test_missing_options_file_is_one_line(tmp_path, capsys, monkeypatch):
    from kdsr_model.train import main
    monkeypatch.setattr('sys.argv', ['kdsr-train', '-opt', str(tmp_path / 'none.yml')])
    code = main()
    assert code == 2 and capsys.readouterr().err.strip() == (
        f'kdsr-train: error: -opt {tmp_path / "none.yml"}: no such file.')


def test_an_exponent_without_a_dot_is_a_number():
    import yaml
    from basicsr.utils.options import ordered_yaml

    import kdsr_model  # noqa: F401  (installs the reading)
    opt = yaml.load('lr: 2e-4\nn: 3\nname: 1e5x\n', Loader=ordered_yaml()[0])
    assert opt == {'lr': 2e-4, 'n': 3, 'name': '1e5x'} and isinstance(opt['lr'], float)


@pytest.mark.slow
def test_a_start_that_fails_in_the_model_leaves_the_folders_as_they_were(tmp_path):
    """The student's teacher file is missing: BasicSR has made experiments/<name> by then."""
    opt = _tiny_options(tmp_path, 'train_kdsrnet_x4ST_tiny.yml')
    proc = run_tool('kdsr-train', '-opt', opt, cwd=tmp_path, check=2)
    assert error_lines(proc)[-1].startswith('kdsr-train: error: path:pretrain_network_g:')
    assert sorted(os.listdir(tmp_path)) == ['opt.yml']  # no experiments/, no tb_logger/
    mine = tmp_path / 'experiments' / 'tiny_KDSRNetSTx4'
    mine.mkdir(parents=True)
    (mine / 'keep.txt').write_text('mine')
    run_tool('kdsr-train', '-opt', opt, cwd=tmp_path, check=2)
    assert os.listdir(tmp_path / 'experiments') == ['tiny_KDSRNetSTx4'] and (mine / 'keep.txt').read_text() == 'mine'
