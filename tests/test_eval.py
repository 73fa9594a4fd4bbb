"""kdsr-eval: metrics against hand computations, models run as documented, tables/CSV/JSON, errors."""
import csv
import json
import math
import os
import subprocess
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils.matlab_functions import imresize

from kdsr_arch import BlindSR_ST, BlindSR_TA
from kdsr_model.evaluate import evaluate, format_tables, image_metrics, load_lpips, main
from kdsr_model.testset import make_testset
from conftest import BIN

SMALL = dict(n_feats=16, n_encoder_res=1, scale=4, n_sr_blocks=2)
OFFSET = 10  # the paired GT is the bicubic upsampling of its LR plus this many grey levels
TAGS = ['sig1.80', 'sig2.00', 'sig2.20', 'sig2.40', 'sig2.60', 'sig2.80', 'sig3.00', 'sig3.20']


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """The tiny nets run far faster on one thread when the machine is busy; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _bicubic(lr):
    return np.clip(imresize(lr.astype(np.float32) / 255., 4) * 255., 0, 255).round().astype(np.uint8)


@pytest.fixture(scope='module')
def data(tmp_path_factory, photos):
    """2 photos as 96x96 HR, their gaussian8 x4 set, and paired folders where GT = bicubic(LR) + OFFSET."""
    root = tmp_path_factory.mktemp('eval')
    hr = root / 'hr'
    hr.mkdir()
    for name in sorted(os.listdir(os.path.join(photos, 'val')))[:2]:
        img = cv2.imread(os.path.join(photos, 'val', name))
        h, w = img.shape[0] // 2, img.shape[1] // 2
        cv2.imwrite(
            str(hr / name), cv2.resize(img[h - 96:h + 96, w - 96:w + 96], (96, 96), interpolation=cv2.INTER_AREA))
    make_testset(str(hr), str(root / 'g8'), 'gaussian8', 4)
    lq, gt = root / 'pair' / 'lq', root / 'pair' / 'gt'
    lq.mkdir(parents=True)
    gt.mkdir()
    for i, name in enumerate(sorted(os.listdir(hr))):
        small = imresize(cv2.imread(str(hr / name)).astype(np.float32) / 255., 1 / 4)
        lr = np.clip(30 + small * 170, 0, 255).round().astype(np.uint8)  # away from 0 and 255
        up = _bicubic(lr)
        assert up.max() <= 255 - OFFSET  # no clipping: every pixel is off by exactly OFFSET
        stem = os.path.splitext(name)[0]
        cv2.imwrite(str(lq / (stem + ('.bmp' if i else '.png'))), lr)  # matched by stem, not extension
        cv2.imwrite(str(gt / (stem + '.png')), up + OFFSET)
    names = [os.path.splitext(n)[0] for n in sorted(os.listdir(hr))]
    return SimpleNamespace(root=root, set=root / 'g8', lq=lq, gt=gt, names=names)


@pytest.fixture(scope='module')
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp('models')
    torch.manual_seed(0)
    student = BlindSR_ST(**SMALL).eval()
    teacher = BlindSR_TA(**SMALL).eval()
    paths = SimpleNamespace(
        student=folder / 'kdsr_s.pth', teacher=folder / 'kdsr_t.pth', student_net=student, teacher_net=teacher)
    torch.save({'params': student.state_dict()}, paths.student)
    torch.save({'params': teacher.state_dict()}, paths.teacher)
    return paths


def _y(img):
    """Y of an 8-bit BGR image by the ITU-R BT.601 formula, float64."""
    b, g, r = (img[..., i].astype(np.float64) for i in range(3))
    return 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255


def _rows(results, **match):
    return [r for r in results['images'] if all(r[k] == v for k, v in match.items())]


def _agg(results, model, column):
    return next(a for a in results['aggregates'] if a['model'] == model and a['column'] == column)


def _tables(stdout):
    """{(row label, column): cell} of every Markdown table printed."""
    cells, lines = {}, stdout.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith('| Method |') and lines[i + 1].startswith('|---'):
            columns = [c.strip() for c in line.strip('|').split('|')][1:]
            for row in lines[i + 2:]:
                if not row.startswith('|'):
                    break
                label, *values = [c.strip() for c in row.strip('|').split('|')]
                cells.update({(label, c): v for c, v in zip(columns, values)})
    return cells


def _cell(agg):
    return f'{agg["psnr"]:.2f}/' + f'{agg["ssim"]:.4f}'.lstrip('0')


def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([os.path.join(BIN, 'kdsr-eval'), *map(str, args)],
                          capture_output=True,
                          text=True,
                          env=env,
                          timeout=300)


def _err_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith('kdsr-eval')]


def test_psnr_and_ssim_match_hand_computations(data):
    gt = cv2.imread(str(data.set / 'HR' / f'{data.names[0]}.png'))
    gt = np.clip(gt, 0, 255 - 7).astype(np.uint8)
    m = image_metrics(gt + 7, gt, crop=4)  # a grey offset of 7 moves Y by 7 * 219 / 255 everywhere
    assert m['psnr'] == pytest.approx(10 * math.log10(255**2 / (7 * 219 / 255)**2), abs=1e-4)
    rng = np.random.default_rng(0)
    sr = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    sr[:4] = 0  # the border crop must leave these rows out
    mse = np.mean((_y(sr)[4:-4, 4:-4] - _y(gt)[4:-4, 4:-4])**2)
    m = image_metrics(sr, gt, crop=4)
    assert m['psnr'] == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-3)
    assert image_metrics(sr, gt, crop=0)['psnr'] < m['psnr'] - 1
    same = image_metrics(gt, gt, crop=4)
    assert same['psnr'] == math.inf and same['ssim'] == pytest.approx(1.0)
    assert 0 < m['ssim'] < 1


def test_bicubic_row_is_basicsr_psnr_of_matlab_bicubic(data):
    results = evaluate(sets=[str(data.set)], device='cpu', progress=False)
    assert [m['name'] for m in results['models']] == ['Bicubic']
    assert results['datasets'][0]['degradations'] == TAGS and results['datasets'][0]['crop'] == 4
    tag_means = []
    for tag in TAGS:
        psnrs = []
        for name in data.names:
            hr = cv2.imread(str(data.set / 'HR' / f'{name}.png'))
            up = _bicubic(cv2.imread(str(data.set / tag / f'{name}.png')))
            row, = _rows(results, model='Bicubic', degradation=tag, image=name)
            assert row['psnr'] == pytest.approx(calculate_psnr(up, hr, 4, test_y_channel=True), abs=1e-9)
            assert row['ssim'] == pytest.approx(calculate_ssim(up, hr, 4, test_y_channel=True), abs=1e-9)
            psnrs.append(row['psnr'])
        assert _agg(results, 'Bicubic', f'g8/{tag}')['psnr'] == pytest.approx(np.mean(psnrs))
        tag_means.append(np.mean(psnrs))
    assert _agg(results, 'Bicubic', 'g8')['psnr'] == pytest.approx(np.mean(tag_means))
    assert _agg(results, 'Bicubic', 'g8')['n_images'] == 16
    assert 20 < np.mean(tag_means) < 40


def _run_net(net, lr, hr=None):
    """The net by hand: the IDR of the image (teachers: with the HR), the generator on the LR
    reflect-padded by EDGE_PAD on every side, the output cropped back; students (as the upscaler
    runs them) then keep the LR's coarse colour."""
    from kdsr_model.upscaler import EDGE_PAD as e
    from kdsr_model.upscaler import keep_input_colors
    t = [
        torch.from_numpy(np.ascontiguousarray(x[:, :, ::-1]).astype(np.float32) / 255).permute(2, 0, 1)[None]
        for x in (lr, hr) if x is not None
    ]
    h, w, s = lr.shape[0], lr.shape[1], net.G.scale
    with torch.no_grad():
        idr = net.encode(*t)[0]
        sr = net.upsample(torch.nn.functional.pad(t[0], (e, e, e, e), mode='reflect'), idr)
    sr = sr[..., e * s:(e + h) * s, e * s:(e + w) * s]
    if hr is None:
        sr = keep_input_colors(sr.clone(), t[0], s)
    return (sr[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)


def test_students_see_lr_only_and_teachers_get_the_hr(data, nets):
    results = evaluate([str(nets.student), str(nets.teacher)], sets=[str(data.set)], device='cpu', progress=False)
    kinds = {m['name']: (m['kind'], m['oracle_hr'], m['label']) for m in results['models']}
    assert kinds == {
        'Bicubic': ('bicubic', False, 'Bicubic'),
        'kdsr_s': ('student', False, 'kdsr_s'),
        'kdsr_t': ('teacher', True, 'kdsr_t (teacher, HR oracle)')
    }
    name, tag = data.names[1], 'sig2.60'
    hr = cv2.imread(str(data.set / 'HR' / f'{name}.png'))
    lr = cv2.imread(str(data.set / tag / f'{name}.png'))
    for model, sr in (('kdsr_s', _run_net(nets.student_net, lr)), ('kdsr_t', _run_net(nets.teacher_net, lr, hr))):
        row, = _rows(results, model=model, degradation=tag, image=name)
        assert row['psnr'] == pytest.approx(calculate_psnr(sr, hr, 4, test_y_channel=True), abs=1e-9)
    oracle = _run_net(nets.teacher_net, lr, hr)
    blind = _run_net(nets.teacher_net, lr, np.zeros_like(hr))  # the teacher's output depends on the HR it is given
    assert (oracle != blind).any()
    row, = _rows(results, model='kdsr_t', degradation=tag, image=name)
    assert row['psnr'] != pytest.approx(calculate_psnr(blind, hr, 4, test_y_channel=True), abs=1e-9)
    table = format_tables(results)
    assert '| kdsr_t (teacher, HR oracle) |' in table and 'encoder is given the HR image' in table


def test_cli_set_and_pairs_table_csv_json_agree(data, nets, tmp_path):
    out = tmp_path / 'out'
    proc = _cli('-m', nets.student, nets.teacher, '--set', data.set, '--lq', data.lq, '--gt', data.gt, '--csv',
                out / 'r.csv', '--json', out / 'r.json')
    assert proc.returncode == 0, proc.stderr
    assert _err_lines(proc.stderr) == []
    results = json.loads((out / 'r.json').read_text())
    assert sorted(os.listdir(out)) == ['r.csv', 'r.json']  # no temporary file left
    labels = ['Bicubic', 'kdsr_s', 'kdsr_t (teacher, HR oracle)']
    columns = ['g8', 'pair'] + [f'g8/{t}' for t in TAGS]
    cells = _tables(proc.stdout)
    assert sorted(cells) == sorted((label, c) for label in labels for c in columns)
    label_of = {m['name']: m['label'] for m in results['models']}
    assert len(results['aggregates']) == 3 * (len(columns))
    for agg in results['aggregates']:
        assert cells[(label_of[agg['model']], agg['column'])] == _cell(agg)
    # paired GT = bicubic(LR) + OFFSET: the bicubic PSNR is known in closed form
    expected = 10 * math.log10(255**2 / (OFFSET * 219 / 255)**2)
    assert _agg(results, 'Bicubic', 'pair')['psnr'] == pytest.approx(expected, abs=1e-4)
    assert cells[('Bicubic', 'pair')].startswith(f'{expected:.2f}/')
    with open(out / 'r.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    images = [r for r in rows if r['kind'] == 'image']
    assert len(images) == len(results['images']) == 3 * (2 * len(TAGS) + 2)
    for r, j in zip(images, results['images']):
        assert (r['model'], r['dataset'], r['image']) == (j['model'], j['dataset'], j['image'])
        assert float(r['psnr']) == pytest.approx(j['psnr']) and float(r['ssim']) == pytest.approx(j['ssim'])
    means = [r for r in rows if r['kind'] == 'mean']
    assert [(r['model'], r['dataset'], r['degradation'] or None, float(r['psnr'])) for r in means] == \
        [(a['model'], a['dataset'], a['degradation'], pytest.approx(a['psnr'])) for a in results['aggregates']]


def test_unreadable_image_one_line_others_evaluated_exit_1(data, tmp_path, capsys):
    lq, gt = tmp_path / 'bad' / 'lq', tmp_path / 'bad' / 'gt'
    lq.mkdir(parents=True)
    gt.mkdir()
    for f in data.lq.iterdir():
        (lq / f.name).write_bytes(f.read_bytes())
    for f in data.gt.iterdir():
        (gt / f.name).write_bytes(f.read_bytes())
    broken = lq / f'{data.names[0]}.png'
    broken.write_bytes(broken.read_bytes()[:40])  # truncated PNG
    assert main(['--lq', str(lq), '--gt', str(gt), '--json', str(tmp_path / 'r.json')]) == 1
    captured = capsys.readouterr()
    lines = _err_lines(captured.err)
    assert len(lines) == 2 and str(broken) in lines[0] and 'skipped' in lines[0] and '1 file(s) skipped' in lines[1]
    results = json.loads((tmp_path / 'r.json').read_text())
    assert [r['image'] for r in results['images']] == [data.names[1]]
    failure, = results['failed']
    assert failure['path'] == str(broken) and 'truncated' in failure['reason']
    assert '| Bicubic |' in captured.out


def test_gt_size_checked_against_the_scale(data, tmp_path, capsys):
    lq, gt = tmp_path / 'lq', tmp_path / 'gt'
    lq.mkdir()
    gt.mkdir()
    big = np.pad(cv2.imread(str(data.gt / f'{data.names[0]}.png')), ((0, 3), (0, 2), (0, 0)))  # 99x98: cropped
    cv2.imwrite(str(gt / 'a.png'), big)
    cv2.imwrite(str(lq / 'a.png'), cv2.imread(str(next(data.lq.glob(f'{data.names[0]}.*')))))
    cv2.imwrite(str(gt / 'b.png'), np.zeros((100, 90, 3), np.uint8))
    cv2.imwrite(str(lq / 'b.png'), np.zeros((24, 24, 3), np.uint8))
    skipped = []
    results = evaluate(paired=[(str(lq), str(gt))], device='cpu', progress=False,
                       on_skip=lambda path, reason: skipped.append(f'{path}: {reason}'))
    assert results['datasets'][0]['scale'] == 4  # found from the first pair: no model to give it
    row, = results['images']
    assert row['image'] == 'a' and row['psnr'] == pytest.approx(10 * math.log10(255**2 / (OFFSET * 219 / 255)**2))
    line, = skipped
    assert str(lq / 'b.png') in line and str(gt / 'b.png') in line and '96x96' in line and '90x100' in line
    assert _err_lines(capsys.readouterr().err) == []  # the library reports through on_skip only
    assert [f['path'] for f in results['failed']] == [line.split(': ')[0]]


def test_missing_model_exits_2_with_one_line_and_writes_nothing(data, tmp_path):
    missing = tmp_path / 'nope.pth'
    proc = _cli('-m', missing, '--set', data.set, '--csv', tmp_path / 'r.csv', '--json', tmp_path / 'r.json')
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert line.startswith('kdsr-eval: error: -m ') and str(missing) in line
    assert proc.stdout == '' and not (tmp_path / 'r.csv').exists() and not (tmp_path / 'r.json').exists()


@pytest.mark.parametrize('case', ['not_weights', 'not_kdsr', 'scales', 'no_set', 'not_a_set', 'no_gt'])
def test_bad_inputs_exit_2_naming_them(case, data, nets, tmp_path, capsys):
    junk = tmp_path / 'junk.pth'
    if case == 'not_weights':
        junk.write_bytes(b'not a checkpoint')
    elif case == 'not_kdsr':
        torch.save({'params': {'conv.weight': torch.zeros(1)}}, junk)
    elif case == 'scales':
        torch.save({'params': BlindSR_ST(**dict(SMALL, scale=2)).state_dict()}, junk)
    elif case == 'no_gt':  # the GT of the second LR image is missing
        (tmp_path / 'gt').mkdir()
        (tmp_path / 'gt' / f'{data.names[0]}.png').write_bytes((data.gt / f'{data.names[0]}.png').read_bytes())
    args, named = {
        'not_weights': (['-m', junk, '--set', data.set], junk),
        'not_kdsr': (['-m', junk, '--set', data.set], junk),
        'scales': (['-m', nets.student, junk, '--set', data.set], 'x2, x4'),
        'no_set': (['--set', tmp_path / 'missing'], tmp_path / 'missing'),
        'not_a_set': (['--set', data.root / 'hr'], data.root / 'hr'),
        'no_gt': (['--lq', data.lq, '--gt', tmp_path / 'gt'], data.lq / f'{data.names[1]}.bmp'),
    }[case]
    assert main([str(a) for a in args]) == 2
    lines = _err_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith('kdsr-eval: error: ') and str(named) in lines[0], lines


def test_lpips_with_local_backbone_weights(data, tmp_path, capsys):
    from torchvision.models import alexnet
    torch.manual_seed(0)
    weights = tmp_path / 'alexnet_random.pth'  # torchvision's format; the classifier (unused by LPIPS) left out
    torch.save({k: v for k, v in alexnet().state_dict().items() if k.startswith('features.')}, weights)
    results = evaluate(paired=[(str(data.lq), str(data.gt))], device='cpu', lpips_weights=str(weights), progress=False)
    assert results['protocol']['lpips_net'] == 'alex'
    values = [r['lpips'] for r in results['images']]
    assert len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values)
    agg = _agg(results, 'Bicubic', 'pair')
    assert agg['lpips'] == pytest.approx(np.mean(values))
    cell = _tables(format_tables(results))[('Bicubic', 'pair')]
    assert cell == f'{agg["lpips"]:.4f}'.lstrip('0') + '/' + _cell(agg)
    model, _ = load_lpips(str(weights), torch.device('cpu'))
    gt = cv2.imread(str(data.gt / f'{data.names[0]}.png'))
    assert image_metrics(gt, gt, 4, model)['lpips'] == pytest.approx(0, abs=1e-6)
    missing = tmp_path / 'missing.pth'
    assert main(['--lq', str(data.lq), '--gt', str(data.gt), '--lpips-weights', str(missing)]) == 2
    line, = _err_lines(capsys.readouterr().err)
    assert str(missing) in line and 'not found' in line
    vgg19_like = tmp_path / 'wrong.pth'
    torch.save({'features.0.weight': torch.zeros(64, 3, 3, 3)}, vgg19_like)
    assert main(['--lq', str(data.lq), '--gt', str(data.gt), '--lpips-weights', str(vgg19_like)]) == 2
    line, = _err_lines(capsys.readouterr().err)
    assert str(vgg19_like) in line and 'VGG16' in line


def test_each_checkpoint_is_read_once(nets, monkeypatch):
    import kdsr_model.evaluate as ev
    import kdsr_model.evaluation.methods as methods
    import kdsr_model.upscaler as up
    reads = []
    for module in (methods, up):
        monkeypatch.setattr(module, 'load_kdsr', lambda path, real=module.load_kdsr: reads.append(path) or real(path))
    method = ev.Method(str(nets.student), device=torch.device('cpu'))
    assert method.kind == 'student' and method.upscaler.bf16 is False  # metrics in fp32
    assert reads == [str(nets.student)]
