"""``kdsr-idr``: IDR extraction over a degradation sweep, t-SNE PNG and separability scores."""
import json
import os
import subprocess

import cv2
import numpy as np
import pytest
import torch

from kdsr_arch import BlindSR_ST, BlindSR_TA
from kdsr_model.idr import separability, swap_effect, sweep_values
from conftest import BIN


def test_separability_scores_degradation_clusters_high_and_content_clusters_low():
    rng = np.random.default_rng(0)
    levels = np.repeat(np.arange(6), 20)
    values = levels * 0.5 + 0.2
    by_level = np.eye(6)[levels] * 3 + rng.normal(0, 0.3, (120, 6))
    scores = separability(by_level, levels, values)
    assert scores['knn_accuracy'] > 0.95 and scores['linear_r2'] > 0.9 and scores['chance'] == pytest.approx(1 / 6)
    # features that only know which image a sample came from (each image seen at every level)
    content = np.repeat(rng.normal(0, 1, (20, 6)), 6, axis=0) + rng.normal(0, 0.01, (120, 6))
    levels_c = np.tile(np.arange(6), 20)
    scores = separability(content, levels_c, levels_c * 0.5 + 0.2)
    assert scores['knn_accuracy'] < 1 / 6 + 0.1 and scores['linear_r2'] < 0.2


def test_grouped_folds_hold_out_whole_photos():
    """IDRs that recognise (photo, level) pairs but carry no degradation that transfers between
    photos: sample-level folds see other crops of the same photo and score high; photo-grouped
    folds score at chance."""
    rng = np.random.default_rng(1)
    photos, crops, n_levels = 10, 8, 6
    code = rng.normal(0, 1, (photos, n_levels, 8))  # one random code per (photo, level)
    photo = np.repeat(np.arange(photos), crops * n_levels)
    levels = np.tile(np.arange(n_levels), photos * crops)
    feats = code[photo, levels] + rng.normal(0, 0.05, (len(photo), 8))
    values = levels * 0.5
    leaky = separability(feats, levels, values)
    grouped = separability(feats, levels, values, groups=photo)
    assert leaky['knn_accuracy'] > 0.9, leaky
    assert grouped['knn_accuracy'] < 1 / n_levels + 0.1 and grouped['linear_r2'] < 0.2, grouped
    assert grouped['cv'] == '5 folds, grouped by photo'


def test_sweep_values_follow_the_scale():
    assert sweep_values('iso', 8, 4) == pytest.approx(np.linspace(0.2, 4.0, 8), abs=1e-4)
    assert sweep_values('iso', 3, 2) == pytest.approx([0.2, 1.1, 2.0])
    assert sweep_values('noise', 3, 4) == [0.0, 25.0, 50.0]


def test_swap_effect_is_zero_for_a_generator_that_ignores_the_idr(photos):
    from kdsr_model.idr import read_crops
    crops, groups = read_crops(os.path.join(photos, 'val'), 1, 64, 0)
    torch.manual_seed(0)
    net = BlindSR_ST(n_feats=16, n_encoder_res=1, scale=4, n_sr_blocks=2)
    net.encoder.kaiming_init()  # an IDR that moves with its input (PyTorch's default init barely does)
    used = swap_effect(net, False, crops, groups, 'iso', [0.2, 4.0], 4)
    assert used['pairs'] == 2 * len(set(groups)) and used['mean_abs_change'] > 0
    assert used['psnr_own'] != used['psnr_swapped']
    upsample = net.upsample
    net.upsample = lambda lq, idr: upsample(lq, torch.zeros_like(idr))  # the IDR never reaches the generator
    blind = swap_effect(net, False, crops, groups, 'iso', [0.2, 4.0], 4)
    assert blind['mean_abs_change'] == 0 and blind['psnr_own'] == blind['psnr_swapped']


def test_spread_tells_a_degradation_code_from_a_content_code():
    from kdsr_model.idr import spread
    rng = np.random.default_rng(0)
    crops, levels = rng.normal(size=(6, 1, 8)), rng.normal(size=(1, 4, 8))
    degradation = np.broadcast_to(levels + 0.01 * crops, (6, 4, 8)).reshape(24, 8)  # moves with the level
    content = np.broadcast_to(crops + 0.01 * levels, (6, 4, 8)).reshape(24, 8)  # moves with the crop
    assert spread(degradation, 4)['ratio'] > 10 and spread(content, 4)['ratio'] < 0.1


@pytest.fixture(scope='module')
def idr_inputs(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp('idr')
    hr = root / 'hr'
    hr.mkdir()
    for name in sorted(os.listdir(os.path.join(photos, 'val')))[:2]:
        img = cv2.imread(os.path.join(photos, 'val', name), cv2.IMREAD_COLOR)
        cv2.imwrite(str(hr / (os.path.splitext(name)[0] + '.png')), cv2.resize(img, (160, 120),
                                                                              interpolation=cv2.INTER_AREA))
    (hr / 'broken.png').write_bytes(b'not an image')
    torch.manual_seed(0)
    files = {}
    for kind, cls in (('student', BlindSR_ST), ('teacher', BlindSR_TA)):
        files[kind] = root / f'{kind}.pth'
        torch.save({'params': cls(n_feats=16, n_encoder_res=1, scale=4, n_sr_blocks=2).state_dict()}, files[kind])
    return root, hr, files


def _idr(*args, cwd):
    return subprocess.run([os.path.join(BIN, 'kdsr-idr'), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})


@pytest.mark.parametrize('kind,sweep', [('student', 'iso'), ('teacher', 'noise')])
def test_kdsr_idr_writes_a_tsne_png_and_a_score(idr_inputs, kind, sweep):
    root, hr, files = idr_inputs
    out = root / f'out_{kind}'
    proc = _idr('-m', files[kind], '--hr', hr, '--out', out, '--sweep', sweep, '--levels', 4, '--crops', 3, '--size',
                64, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert 'broken.png' in proc.stderr and proc.stderr.count('skipped') == 1  # named, and the rest goes on
    png = cv2.imread(str(out / 'idr_tsne.png'))
    assert png is not None and png.shape[0] > 200 and png.std() > 10
    result = json.loads((out / 'idr.json').read_text())
    assert result['samples'] == 2 * 3 * 4 and result['teacher'] == (kind == 'teacher') and result['sweep'] == sweep
    assert 0 <= result['knn_accuracy'] <= 1 and result['chance'] == 0.25 and np.isfinite(result['linear_r2'])
    assert f"{result['knn_accuracy']:.3f}" in proc.stdout
    sp = result['spread']
    assert sp['across_levels'] > 0 and sp['across_crops'] > 0 and 'IDR spread' in proc.stdout
    assert sp['ratio'] == pytest.approx(sp['across_levels'] / sp['across_crops'])
    swap = result['swap']  # 2 photos x (lowest, highest level)
    assert swap['pairs'] == 4 and swap['mean_abs_change'] > 0 and 'IDR swap (4 upscales' in proc.stdout
    data = np.load(out / 'idr.npz')
    assert data['idr'].shape == (24, 16) and sorted(set(data['level'].tolist())) == [0, 1, 2, 3]
    assert not [f for f in os.listdir(out) if 'partial' in f]


def test_kdsr_idr_errors_are_one_line(idr_inputs):
    root, hr, files = idr_inputs
    proc = _idr('-m', root / 'missing.pth', '--hr', hr, '--out', root / 'o1', cwd=root)
    assert proc.returncode == 2 and proc.stderr.strip().count('\n') == 0 and 'missing.pth' in proc.stderr
    proc = _idr('-m', files['student'], '--hr', root / 'nowhere', '--out', root / 'o2', cwd=root)
    assert proc.returncode == 2 and 'nowhere' in proc.stderr
    proc = _idr('-m', files['student'], '--hr', hr, '--out', root / 'o3', '--size', 66, cwd=root)
    assert proc.returncode == 2 and '--size 66' in proc.stderr


def test_kdsr_idr_device_flag_is_the_same_as_the_other_tools(idr_inputs, monkeypatch, capsys):
    from kdsr_model.idr import main
    root, hr, files = idr_inputs
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert main(['-m', str(files['student']), '--hr', str(hr), '--out', str(root / 'o4'), '--device', 'cuda']) == 2
    assert capsys.readouterr().err.strip() == (
        'kdsr-idr: error: --device cuda: CUDA is not available on this machine; use --device cpu.')
    assert not (root / 'o4').exists()
    with pytest.raises(SystemExit):
        main(['-m', str(files['student']), '--hr', str(hr), '--out', str(root / 'o5'), '--device', 'tpu'])
    assert "argument --device: invalid choice: 'tpu'" in capsys.readouterr().err
