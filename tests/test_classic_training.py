"""KDSR-classic through BasicSR: tiny teacher and students train (disk and LMDB), the generated
option files are current and build the paper's sizes, the authors' raw classic files test."""
import os
import re
import subprocess

import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.models import build_model
from basicsr.utils.options import ordered_yaml

from kdsr_arch import BlindSR_ST
from kdsr_model.data.classic import ClassicDegrader
from conftest import BIN, REPO

SAMPLES = os.path.join(REPO, 'datasets', 'samples')
G8 = os.path.join(SAMPLES, 'val_gaussian8_x4')
PARAMS = {('BlindSR_ST', 64): 5_795_099, ('BlindSR_TA', 64): 5_822_747, ('BlindSR_ST', 128): 14_191_003,
          ('BlindSR_TA', 128): 14_246_299}


def _load(path):
    with open(path) as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def _tiny(name, tmp_path, iters=4, backend='disk', lmdb=None, train=None, **path):
    """A tiny option file with absolute data paths, written to ``tmp_path``."""
    opt = _load(os.path.join(REPO, 'options', 'tiny', name))
    train_set = opt['datasets']['train']
    if backend == 'lmdb':
        train_set.update(dataroot_gt=str(lmdb), io_backend={'type': 'lmdb'})
        train_set.pop('meta_info')
    else:
        train_set.update(dataroot_gt=os.path.join(SAMPLES, 'train'),
                         meta_info=os.path.join(SAMPLES, 'meta_info_train.txt'))
    opt['datasets']['val'].update(dataroot_gt=os.path.join(G8, 'HR'), dataroot_lq=os.path.join(G8, 'sig2.60'))
    opt['train']['total_iter'] = iters
    opt['val']['val_freq'] = opt['logger']['save_checkpoint_freq'] = iters
    opt['logger']['print_freq'] = 1
    opt['path'].update(path)
    opt['train'].update(train or {})
    out = tmp_path / name
    out.write_text(yaml.dump(opt, Dumper=ordered_yaml()[1]))
    return out, opt['name']


def _train(opt_file, cwd):
    proc = subprocess.run([os.path.join(BIN, 'kdsr-train'), '-opt', str(opt_file)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return log


def _iter_lines(log):
    """{iteration: (lr, {loss name: value})} from BasicSR's training log."""
    rows = {}
    for m in re.finditer(r'iter:\s+([\d,]+), lr:\(([\d.e+-]+),\)\].*?\] (.*)', log):
        losses = dict((k, float(v)) for k, v in re.findall(r'(\w+): ([\d.e+-]+)', m.group(3)))
        rows[int(m.group(1).replace(',', ''))] = (float(m.group(2)), losses)
    return rows


@pytest.fixture(scope='module')
def classic_teacher(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('classic_teacher')
    opt_file, name = _tiny('train_kdsr_classic_iso_x4TA_tiny.yml', tmp_path)
    log = _train(opt_file, tmp_path)
    return tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth', log


def test_classic_teacher_trains_validates_on_gaussian8_and_saves(classic_teacher):
    path, log = classic_teacher
    assert 'Model [KDSRClassicTAModel] is created.' in log
    rows = _iter_lines(log)
    assert sorted(rows) == [1, 2, 3, 4] and all('l_pix' in losses for _, losses in rows.values())
    psnr = [float(v) for v in re.findall(r'# psnr: ([\d.]+)', log)]
    ssim = [float(v) for v in re.findall(r'# ssim: ([\d.]+)', log)]
    assert psnr and 5 < psnr[0] < 60 and ssim and 0 < ssim[0] < 1
    state = torch.load(path, map_location='cpu', weights_only=True)['params']
    assert state['E.E.0.weight'].shape[1] == 3 + 3 * 16  # LR + pixel-unshuffled HR at x4


def test_classic_iso_student_on_lmdb_distils_from_the_teacher(classic_teacher, tmp_path):
    lmdb = tmp_path / 'prepared'
    proc = subprocess.run([os.path.join(BIN, 'kdsr-prepare'), '--hr', os.path.join(SAMPLES, 'train'), '--out',
                           str(lmdb), '--crop-size', '200', '--step', '200', '--lmdb'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    teacher = str(classic_teacher[0])
    opt_file, name = _tiny('train_kdsr_classic_iso_x4ST_tiny.yml', tmp_path, backend='lmdb', lmdb=lmdb / 'sub.lmdb',
                           pretrain_network_g=teacher, pretrain_network_TA=teacher)
    log = _train(opt_file, tmp_path)
    assert 'Model [KDSRClassicSTModel] is created.' in log and 'Student initialised from teacher' in log
    rows = _iter_lines(log)
    assert all({'l_pix', 'l_kd'} <= set(losses) for _, losses in rows.values())
    assert (tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth').is_file()


def test_anisonoise_student_has_the_authors_kd_only_phase_then_l1_plus_kd(classic_teacher, tmp_path):
    teacher = str(classic_teacher[0])
    opt_file, _ = _tiny('train_kdsr_classic_anisonoise_x4ST_tiny.yml', tmp_path, iters=5,
                        train={'encoder_iter': 3, 'lr_encoder': 4e-4, 'gamma_encoder': 0.1, 'lr_decay_encoder': 2,
                               'lr_sr': 2e-4, 'gamma_sr': 0.5, 'lr_decay_sr': 2},
                        pretrain_network_g=teacher, pretrain_network_TA=teacher)
    rows = _iter_lines(_train(opt_file, tmp_path))
    assert sorted(rows) == [1, 2, 3, 4, 5]
    for it in (1, 2, 3):  # KD only, lr_encoder * 0.1 ** floor(it / 2)
        assert set(rows[it][1]) == {'l_kd'}
    for it in (4, 5):  # L1 + KD, lr_sr * 0.5 ** floor((it - 3) / 2)
        assert {'l_pix', 'l_kd'} <= set(rows[it][1])
    # the lr in force at each step (BasicSR logs the optimiser's lr after the step)
    assert [rows[it][0] for it in (1, 2, 3, 4, 5)] == pytest.approx([4e-4, 4e-5, 4e-5, 2e-4, 1e-4])


def _in_process_model(opt, tmp_path, is_train=True):
    opt.update(dist=False, rank=0, world_size=1, is_train=is_train, num_gpu=0)
    root = tmp_path / 'exp'
    opt['path'].update(experiments_root=str(root), models=str(root), log=str(root), training_states=str(root),
                       visualization=str(root), results_root=str(root))
    return build_model(opt)


def test_classic_student_lr_schedule_matches_the_authors_formula(classic_teacher, tmp_path):
    teacher = str(classic_teacher[0])
    opt = _load(os.path.join(REPO, 'options', 'tiny', 'train_kdsr_classic_anisonoise_x4ST_tiny.yml'))
    opt['path'].update(pretrain_network_g=teacher, pretrain_network_TA=teacher)
    opt['train'].update(encoder_iter=100, lr_encoder=2e-4, gamma_encoder=0.1, lr_decay_encoder=60, lr_sr=1e-4,
                        gamma_sr=0.5, lr_decay_sr=125)
    model = _in_process_model(opt, tmp_path)
    for it, expected in ((1, 2e-4), (59, 2e-4), (60, 2e-5), (100, 2e-5), (101, 1e-4), (224, 1e-4), (225, 5e-5),
                         (350, 2.5e-5)):
        assert model.student_lr(it) == pytest.approx(expected), it


def test_classic_options_are_generated_and_current():
    proc = subprocess.run([os.path.join(BIN, 'python'), os.path.join(REPO, 'scripts', 'make_classic_options.py'),
                           '--out', os.path.join(REPO, 'options'), '--check'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    names = sorted(n for n in os.listdir(os.path.join(REPO, 'options')) if n.startswith('train_kdsr_classic_'))
    assert len(names) == 18
    for needed in ('iso_x4TA', 'iso_x4ST', 'anisonoise_x4TA', 'anisonoise_x4ST', 'iso_x4TA_L', 'iso_x2ST',
                   'anisonoise_x3ST'):
        assert f'train_kdsr_classic_{needed}.yml' in names


@pytest.mark.parametrize('name', sorted(n for n in os.listdir(os.path.join(REPO, 'options'))
                                        if n.startswith('train_kdsr_classic_')))
def test_classic_option_files_have_the_papers_sizes_and_valid_degradations(name):
    opt = _load(os.path.join(REPO, 'options', name))
    scale = opt['scale']
    assert opt['gt_size'] == 64 * scale
    degrader = ClassicDegrader(opt['classic_degradation'], scale)
    if opt['classic_degradation']['type'] == 'iso':
        assert degrader.sigma_range == (0.2, float(scale))
    else:
        assert opt['classic_degradation']['noise'] == 25
    nets = [opt['network_g']] + ([opt['network_TA']] if 'network_TA' in opt else [])
    for net_opt in nets:
        assert net_opt['scale'] == scale
        if scale == 4:  # the published counts are for x4
            net = build_network(dict(net_opt))
            assert sum(p.numel() for p in net.parameters()) == PARAMS[(net_opt['type'], net_opt['n_feats'])]
    if opt['model_type'] == 'KDSRClassicSTModel':
        assert opt['path']['pretrain_network_g'] == opt['path']['pretrain_network_TA']
        assert opt['path']['pretrain_network_TA'].startswith(f"experiments/{opt['name'].replace('ST', 'TA')}/")


def test_authors_raw_classic_student_file_runs_through_basicsr_test(tmp_path):
    """A student saved as the authors' classic code does (a raw state_dict, keys G.* / E_st.*)
    loads strictly through options/test_kdsr_classic_iso_x4ST.yml and is scored."""
    torch.manual_seed(0)
    net = BlindSR_ST(n_feats=16, n_encoder_res=2, scale=4, n_sr_blocks=3)
    ckpt = tmp_path / 'KDSRsM_iso_x4.pt'
    torch.save(net.state_dict(), ckpt)
    opt = _load(os.path.join(REPO, 'options', 'test_kdsr_classic_iso_x4ST.yml'))
    assert len(opt['datasets']) == 8
    for i, tag in enumerate(sorted(t for t in os.listdir(G8) if t.startswith('sig'))):
        opt['datasets'][f'test_{i + 1}'].update(dataroot_gt=os.path.join(G8, 'HR'),
                                                dataroot_lq=os.path.join(G8, tag))
    opt['network_g'].update(n_feats=16, n_encoder_res=2, n_sr_blocks=3)
    opt['path']['pretrain_network_g'] = str(ckpt)
    opt_file = tmp_path / 'test.yml'
    opt_file.write_text(yaml.dump(opt, Dumper=ordered_yaml()[1]))
    proc = subprocess.run([os.path.join(BIN, 'kdsr-test'), '-opt', str(opt_file)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert len(re.findall(r'# psnr: ([\d.]+)', log)) == 8 and len(re.findall(r'# ssim: ([\d.]+)', log)) == 8
    # a wrong file is not loaded silently: a teacher-shaped raw file fails the strict load
    bad = tmp_path / 'bad.pt'
    torch.save({k.replace('E_st.', 'E.'): v for k, v in net.state_dict().items()}, bad)
    opt['path']['pretrain_network_g'] = str(bad)
    opt_file.write_text(yaml.dump(opt, Dumper=ordered_yaml()[1]))
    proc = subprocess.run([os.path.join(BIN, 'kdsr-test'), '-opt', str(opt_file)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and str(bad) in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
