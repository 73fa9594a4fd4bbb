"""Tiny real-world KDSR stages through BasicSR's train pipeline, in subprocesses, on CPU."""
import os
import re
import subprocess

import pytest
import torch
import yaml

from kdsr_arch import load_state_dict_file
from test_plugin import BIN, REPO, _stock_basicsr_clone, run_py

SAMPLES = os.path.join(REPO, 'datasets', 'samples')


def _options(name, tmp_path, iters=4, train=None, **path):
    with open(os.path.join(REPO, 'options', 'tiny', name)) as f:
        opt = yaml.safe_load(f)
    train_set, val = opt['datasets']['train'], opt['datasets']['val']
    train_set['dataroot_gt'] = os.path.join(SAMPLES, 'train')
    train_set['meta_info'] = os.path.join(SAMPLES, 'meta_info_train.txt')
    val['dataroot_gt'], val['dataroot_lq'] = os.path.join(SAMPLES, 'val', 'gt'), os.path.join(SAMPLES, 'val', 'lq')
    opt['train']['total_iter'] = iters
    opt['val']['val_freq'] = opt['logger']['save_checkpoint_freq'] = opt['logger']['print_freq'] = 2
    opt['logger']['use_tb_logger'] = False
    opt['path'].update(path)
    opt['train'].update(train or {})
    out = tmp_path / name
    out.write_text(yaml.safe_dump(opt))
    return out, opt['name']


def _train(opt_file, cwd, stock=False, check=True):
    cmd = ['basicsr/train.py', '-opt', str(opt_file)] if stock else None
    if stock:
        return run_py(args=cmd, cwd=cwd, check=check)
    proc = subprocess.run([os.path.join(BIN, 'kdsr-train'), '-opt', str(opt_file)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc


def _psnrs(log):
    return [float(v) for v in re.findall(r'# psnr: ([\d.]+)', log)]


@pytest.fixture(scope='module')
def teacher_run(tmp_path_factory):
    """The tiny teacher stage, run once through BasicSR's own unedited ``basicsr/train.py``."""
    tmp_path = tmp_path_factory.mktemp('teacher')
    clone = _stock_basicsr_clone(tmp_path)
    opt_file, name = _options('train_kdsrnet_x4TA_tiny.yml', tmp_path)
    proc = _train(opt_file, clone, stock=True)
    return clone / 'experiments' / name, proc.stdout + proc.stderr


def test_teacher_stage_trains_validates_and_saves(teacher_run):
    exp, log = teacher_run
    assert 'Model [KDSRNetTAModel] is created.' in log
    assert re.search(r'iter:\s+4, .*l_pix: [\d.e+-]+', log)
    psnrs = _psnrs(log)
    assert len(psnrs) >= 2 and all(5 < p < 60 for p in psnrs)
    assert sorted(os.listdir(exp / 'models')) == ['net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth']
    ckpt = torch.load(exp / 'models' / 'net_g_latest.pth', map_location='cpu', weights_only=True)
    assert set(ckpt) == {'params', 'params_ema'}
    assert ckpt['params']['E.E.0.weight'].shape == (16, 51, 3, 3)
    assert sorted(os.listdir(exp / 'training_states')) == ['2.state', '4.state']


def test_student_stage_starts_from_the_teacher_and_distils(teacher_run, tmp_path):
    exp, _ = teacher_run
    teacher_file = str(exp / 'models' / 'net_g_latest.pth')
    opt_file, name = _options('train_kdsrnet_x4ST_tiny.yml', tmp_path, train={'lr_decay_sr': 2},
                              pretrain_network_g=teacher_file, pretrain_network_TA=teacher_file)
    proc = _train(opt_file, tmp_path)
    log = proc.stdout + proc.stderr
    assert 'Model [KDSRNetSTModel] is created.' in log
    assert 'Student initialised from teacher' in log and 'Teacher loaded from' in log
    kd = [float(v) for v in re.findall(r'l_kd: ([\d.e+-]+)', log)]
    assert len(kd) == 2 and all(v > 0 for v in kd)
    # the authors' manual schedule overrides the scheduler: 2e-4 * 0.5 ** floor(4 / 2)
    assert re.search(r'iter:\s+4, lr:\(5\.000e-05,\)', log)
    student = load_state_dict_file(str(tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth'))
    teacher = load_state_dict_file(teacher_file)
    assert student['E_st.E.0.weight'].shape == (16, 3, 3, 3)
    # trained from the teacher's generator: close to it, yet moved by 4 steps
    head_s, head_t = student['G.head.0.weight'], teacher['G.head.0.weight']
    assert not torch.equal(head_s, head_t) and (head_s - head_t).abs().max() < 0.05
    assert len(_psnrs(log)) >= 2


def test_student_without_teacher_file_names_the_option(tmp_path):
    opt_file, _ = _options('train_kdsrnet_x4ST_tiny.yml', tmp_path, pretrain_network_g=None,
                           pretrain_network_TA=str(tmp_path / 'missing.pth'))
    proc = _train(opt_file, tmp_path, check=False)
    assert proc.returncode != 0
    assert 'path:pretrain_network_TA: teacher checkpoint' in proc.stderr.strip().splitlines()[-1]
