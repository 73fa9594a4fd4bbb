"""Real-world KDSR training through BasicSR's train pipeline: tiny stages in subprocesses, on CPU."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from basicsr.models import build_model
from basicsr.utils.options import ordered_yaml

from kdsr_arch import BlindSR_TA, load_state_dict_file
from kdsr_model.errors import MissingFileError, OptionError
from conftest import BIN, REPO, _batch, free_port, _in_process, _options, _psnrs, _train, run_py, stock_basicsr_clone

SAMPLES = os.path.join(REPO, 'datasets', 'samples')
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope='module')
def vgg19_file(tmp_path_factory):
    """A VGG19 state_dict with random weights, standing in for torchvision's download."""
    import torchvision
    path = tmp_path_factory.mktemp('vgg') / 'vgg19-dcbb9e9d.pth'
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg19().state_dict(), path)
    return path


@pytest.fixture(scope='module')
def teacher_run(tmp_path_factory, prepared):
    """The tiny teacher stage, run through BasicSR's own unedited ``basicsr/train.py``."""
    tmp_path = tmp_path_factory.mktemp('teacher')
    clone = stock_basicsr_clone(tmp_path)
    opt_file, name = _options('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared)
    proc = run_py(args=['basicsr/train.py', '-opt', str(opt_file)], cwd=clone)
    return clone / 'experiments' / name, proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def student_run(tmp_path_factory, prepared, teacher_run):
    """The tiny student stage (L1 + KD) from the teacher, on the LMDB copy of the data."""
    tmp_path = tmp_path_factory.mktemp('student')
    teacher_file = str(teacher_run[0] / 'models' / 'net_g_latest.pth')
    opt_file, name = _options('train_kdsrnet_x4ST_tiny.yml', tmp_path, prepared, backend='lmdb',
                              train={'lr_decay_sr': 2}, pretrain_network_g=teacher_file,
                              pretrain_network_TA=teacher_file)
    return tmp_path / 'experiments' / name, _train(opt_file, tmp_path), teacher_file


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


def test_teacher_stage_on_lmdb(tmp_path, prepared):
    opt_file, name = _options('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, iters=2, backend='lmdb')
    log = _train(opt_file, tmp_path)
    assert "'type': 'lmdb'" in log or 'type: lmdb' in log
    assert len(_psnrs(log)) >= 1
    assert (tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth').is_file()


def test_student_stage_starts_from_the_teacher_and_distils(student_run):
    exp, log, teacher_file = student_run
    assert 'Model [KDSRNetSTModel] is created.' in log
    assert 'Student initialised from teacher' in log and 'Teacher loaded from' in log
    kd = [float(v) for v in re.findall(r'l_kd: ([\d.e+-]+)', log)]
    assert len(kd) == 2 and all(v > 0 for v in kd)
    # the authors' manual schedule overrides the scheduler: 2e-4 * 0.5 ** floor(4 / 2)
    assert re.search(r'iter:\s+4, lr:\(5\.000e-05,\)', log)
    student = load_state_dict_file(str(exp / 'models' / 'net_g_latest.pth'))
    teacher = load_state_dict_file(teacher_file)
    assert student['E_st.E.0.weight'].shape == (16, 3, 3, 3)
    # trained from the teacher's generator: close to it, yet moved by 4 steps
    head_s, head_t = student['G.head.0.weight'], teacher['G.head.0.weight']
    assert not torch.equal(head_s, head_t) and (head_s - head_t).abs().max() < 0.05
    assert len(_psnrs(log)) >= 2


def test_gan_stage_from_the_student(tmp_path, prepared, student_run, vgg19_file):
    exp_st, _, teacher_file = student_run
    opt_file, name = _options('train_kdsrgan_x4STV2_tiny.yml', tmp_path, prepared,
                              pretrain_network_g=str(exp_st / 'models' / 'net_g_latest.pth'),
                              pretrain_network_TA=teacher_file)
    text = opt_file.read_text().replace('experiments/pretrained_models/vgg19-dcbb9e9d.pth', str(vgg19_file))
    opt_file.write_text(text)
    log = _train(opt_file, tmp_path)
    assert 'Model [KDSRGANSTModel] is created.' in log
    for name_ in ('l_g_pix', 'l_kd', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake'):
        assert re.search(rf'iter:\s+4, .*{name_}: [\d.e+-]+', log), name_
    models = os.listdir(tmp_path / 'experiments' / name / 'models')
    assert {'net_g_latest.pth', 'net_d_latest.pth', 'net_g_4.pth', 'net_d_4.pth'} <= set(models)
    assert len(_psnrs(log)) >= 2


def test_missing_vgg_weights_is_one_line_naming_the_option(tmp_path, prepared, student_run):
    exp_st, _, teacher_file = student_run
    opt_file, _ = _options('train_kdsrgan_x4STV2_tiny.yml', tmp_path, prepared,
                           pretrain_network_g=str(exp_st / 'models' / 'net_g_latest.pth'),
                           pretrain_network_TA=teacher_file)
    proc = subprocess.run([os.path.join(BIN, 'kdsr-train'), '-opt', str(opt_file)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'kdsr-train: error: train:perceptual_opt:vgg_weights: VGG19 weights not found')


def test_student_without_teacher_file_names_the_option(tmp_path, prepared):
    opt_file, _ = _options('train_kdsrnet_x4ST_tiny.yml', tmp_path, prepared, pretrain_network_g=None,
                           pretrain_network_TA=str(tmp_path / 'missing.pth'))
    proc = subprocess.run([os.path.join(BIN, 'kdsr-train'), '-opt', str(opt_file)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert 'kdsr-train: error: path:pretrain_network_TA: teacher checkpoint' in proc.stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------- in-process: clear option errors


@pytest.fixture(scope='module')
def tiny_teacher_file(tmp_path_factory):
    """A teacher of the tiny options' size (16 / 2 / 4, x4)."""
    path = tmp_path_factory.mktemp('t') / 'teacher.pth'
    teacher = BlindSR_TA(n_feats=16, n_encoder_res=2, scale=4, n_sr_blocks=4)
    torch.save({'params': teacher.state_dict(), 'params_ema': teacher.state_dict()}, path)
    return str(path)


@pytest.mark.parametrize('change,message', [
    ({'scale': 2}, 'network_TA: teacher scale x4 differs from the student scale x2'),
    ({'n_feats': 8}, 'does not match network_TA'),
])
def test_teacher_student_mismatch_is_a_clear_error(tmp_path, prepared, tiny_teacher_file, change, message):
    opt = _in_process('train_kdsrnet_x4ST_tiny.yml', tmp_path, prepared, pretrain_network_g=None,
                      pretrain_network_TA=tiny_teacher_file)
    opt['network_g'].update(change)
    opt['network_TA'].update(change)
    if 'scale' in change:
        opt['network_TA']['scale'] = 4
    with pytest.raises(OptionError, match=re.escape(message)):
        build_model(opt)


def test_student_init_from_a_teacher_of_another_width(tmp_path, prepared, tiny_teacher_file):
    opt = _in_process('train_kdsrnet_x4ST_tiny.yml', tmp_path, prepared, pretrain_network_g=tiny_teacher_file,
                      pretrain_network_TA=tiny_teacher_file)
    opt['network_g']['n_feats'] = 8
    with pytest.raises(OptionError, match='path:pretrain_network_g: .*differ in width, depth or scale'):
        build_model(opt)


def test_missing_teacher_after_resume_points_to_ignore_resume_networks(tmp_path, prepared):
    opt = _in_process('train_kdsrnet_x4ST_tiny.yml', tmp_path, prepared, pretrain_network_g=None,
                      pretrain_network_TA=str(tmp_path / 'models' / 'net_TA_4.pth'), resume_state='x/4.state')
    with pytest.raises(MissingFileError, match='ignore_resume_networks: network_TA'):
        build_model(opt)


def test_queue_size_not_divisible_by_batch(tmp_path, prepared):
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, top={'queue_size': 3})
    model = build_model(opt)
    with pytest.raises(OptionError, match=r'queue_size \(3\) must be divisible by the batch size per GPU \(2\)'):
        model.feed_data(_batch(opt, 2))


def test_gt_size_larger_than_the_gt_patches(tmp_path, prepared):
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, top={'gt_size': 512})
    model = build_model(opt)
    with pytest.raises(OptionError, match=r'gt_size \(512\) is larger than the GT patches .* \(400x400\)'):
        model.feed_data(_batch(opt, 2))


def test_synthesis_runs_on_the_model_device_and_validation_never_synthesises(tmp_path, prepared):
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared)
    model = build_model(opt)
    model.feed_data(_batch(opt, 2))
    assert model.lq.shape == (2, 3, 16, 16) and model.gt.shape == (2, 3, 64, 64)
    assert model.lq.device == model.gt.device == model.device
    levels = model.lq * 255  # quantised to 8-bit levels, as the authors do
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    model.is_train = False
    paired = {'lq': torch.rand(1, 3, 8, 8), 'gt': torch.rand(1, 3, 32, 32)}
    model.feed_data(paired)
    assert torch.equal(model.lq, paired['lq'])


def _student_step(tmp_path, prepared, teacher_file, autocast, lq, gt):
    """One student step on a fixed batch; returns the model and the dtypes the convs computed in."""
    opt = _in_process('train_kdsrnet_x4ST_tiny.yml', tmp_path, prepared, pretrain_network_g=teacher_file,
                      pretrain_network_TA=teacher_file, train={'autocast': autocast})
    torch.manual_seed(0)
    model = build_model(opt)
    seen = set()
    for net in (model.net_g, model.net_TA):
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    model.lq, model.gt = lq, gt
    model.optimize_parameters(1)
    return model, seen


def test_bf16_autocast_training_computes_convs_in_bf16_and_losses_in_fp32(tmp_path, prepared, tiny_teacher_file):
    torch.manual_seed(1)
    gt = torch.rand(2, 3, 64, 64)
    lq = torch.nn.functional.avg_pool2d(gt, 4)
    ref, ref_dtypes = _student_step(tmp_path / 'fp32', prepared, tiny_teacher_file, None, lq, gt)
    amp, amp_dtypes = _student_step(tmp_path / 'bf16', prepared, tiny_teacher_file, 'bf16', lq, gt)
    assert ref_dtypes == {torch.float32} and amp_dtypes == {torch.bfloat16}
    assert amp.output.dtype == torch.float32 and amp.gt.dtype == torch.float32
    for name in ('l_pix', 'l_kd'):
        assert torch.isfinite(torch.tensor(amp.log_dict[name]))
        assert amp.log_dict[name] == pytest.approx(ref.log_dict[name], rel=0.05, abs=1e-6)
    assert 0 < (amp.output - ref.output).abs().max() < 0.05  # bf16 rounding, not another computation
    # the weights, their update and the EMA copy stay fp32
    params = dict(amp.net_g.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values())
    ref_params = dict(ref.net_g.named_parameters())
    moved = [n for n, p in params.items() if not torch.equal(p, ref_params[n])]
    assert moved and all(p.dtype == torch.float32 for p in amp.net_g_ema.parameters())


@pytest.mark.parametrize('name', ['train_kdsrnet_x4TA_tiny.yml', 'train_kdsrnet_x4ST_tiny.yml',
                                  'train_kdsr_classic_iso_x4ST_tiny.yml'])
def test_idr_probe_option_adds_its_loss_on_the_trained_nets_idr(name, tmp_path, prepared, tiny_teacher_file):
    probe = {'idr_probe_opt': {'type': 'IDRProbeLoss', 'loss_weight': 1.0}}
    paths = {} if 'TA' in name else dict(pretrain_network_g=tiny_teacher_file, pretrain_network_TA=tiny_teacher_file)
    torch.manual_seed(1)
    gt = torch.rand(2, 3, 64, 64)
    lq = torch.nn.functional.avg_pool2d(gt, 4)
    models = {}
    for label, extra in (('plain', {}), ('probe', probe)):
        torch.manual_seed(0)
        model = build_model(_in_process(name, tmp_path / label, prepared, train=extra, **paths))
        model.lq, model.gt = lq, gt
        model.optimize_parameters(1)
        models[label] = model
    assert 'l_probe' not in models['plain'].log_dict
    assert models['probe'].log_dict['l_probe'] > 0
    # the probe's gradient reaches the encoder: its step differs from the plain one
    encoder = 'E.' if 'TA' in name else 'E_st.'
    plain = dict(models['plain'].net_g.named_parameters())
    moved = [n for n, p in models['probe'].net_g.named_parameters() if n.startswith(encoder)
             and not torch.equal(p, plain[n])]
    assert moved


def test_encoder_init_kaiming_restarts_only_the_encoder_and_not_on_resume(tmp_path, prepared, tiny_teacher_file):
    paths = dict(pretrain_network_g=tiny_teacher_file)
    plain = build_model(_in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path / 'plain', prepared, **paths))
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path / 'init', prepared, train={'encoder_init': 'kaiming'},
                      **paths)
    fresh = build_model(opt)
    before, after = plain.net_g.state_dict(), fresh.net_g.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith('E.') for k in changed)
    assert all(k in changed for k in after if k.startswith('E.') and k.endswith('weight'))
    ema = fresh.net_g_ema.state_dict()
    assert all(torch.equal(ema[k], after[k]) for k in after)  # the EMA copy starts from the same encoder
    opt['path']['resume_state'] = 'some.state'  # as BasicSR sets it on --auto_resume
    resumed = build_model(opt).net_g.state_dict()
    assert all(torch.equal(resumed[k], before[k]) for k in before)
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path / 'bad', prepared, train={'encoder_init': 'xavier'})
    with pytest.raises(OptionError, match=r"train:encoder_init: 'xavier' is not supported; use kaiming"):
        build_model(opt)


@pytest.mark.parametrize('key,trained,frozen', [('freeze_generator', 'E_st.', 'G.'),
                                                  ('freeze_encoder', 'G.', 'E_st.')])
def test_freeze_trains_only_the_other_part(tmp_path, prepared, tiny_teacher_file, key, trained, frozen):
    paths = dict(pretrain_network_g=tiny_teacher_file, pretrain_network_TA=tiny_teacher_file)
    opt = _in_process('train_kdsrnet_x4ST_tiny.yml', tmp_path / 'frozen', prepared,
                      train={key: True, 'ema_decay': 0.5}, **paths)
    model = build_model(opt)
    assert model.opt['find_unused_parameters'] is True  # DDP: the frozen part gets no gradient
    optimised = {id(p) for group in model.optimizer_g.param_groups for p in group['params']}
    assert optimised == {id(p) for name, p in model.net_g.named_parameters() if name.startswith(trained)}
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    torch.manual_seed(1)
    gt = torch.rand(2, 3, 64, 64)
    model.lq, model.gt = torch.nn.functional.avg_pool2d(gt, 4), gt
    for it in (1, 2):
        model.optimize_parameters(it)
    after, ema = model.net_g.state_dict(), model.net_g_ema.state_dict()
    assert all(torch.equal(after[k], before[k]) and torch.equal(ema[k], before[k]) for k in after if k.startswith(frozen))
    moved = [k for k in after if k.startswith(trained) and not torch.equal(after[k], before[k])]
    assert moved and all(not torch.equal(ema[k], before[k]) for k in moved)  # the EMA follows the trained part
    assert model.log_dict['l_pix'] > 0 and model.log_dict['l_kd'] >= 0


@pytest.mark.parametrize('train,message', [
    ({'freeze_generator': 'yes'}, "train:freeze_generator: 'yes' must be true or false"),
    ({'freeze_encoder': 1}, 'train:freeze_encoder: 1 must be true or false'),
    ({'freeze_generator': True, 'freeze_encoder': True},
     'train:freeze_generator and train:freeze_encoder: both true leaves nothing to train'),
])
def test_freeze_option_misuse_is_one_line(tmp_path, prepared, tiny_teacher_file, train, message):
    opt = _in_process('train_kdsrnet_x4ST_tiny.yml', tmp_path, prepared, train=train,
                      pretrain_network_g=tiny_teacher_file, pretrain_network_TA=tiny_teacher_file)
    with pytest.raises(OptionError, match=re.escape(message)):
        build_model(opt)


def test_unknown_autocast_is_one_line_naming_the_option(tmp_path, prepared):
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, train={'autocast': 'fp8'})
    with pytest.raises(OptionError, match=r"train:autocast: 'fp8' is not supported; use bf16, or ~ for fp32"):
        build_model(opt)


# ----------------------------------------------------------------- resume, DDP


def test_auto_resume_after_a_kill_restores_iteration_optimiser_and_scheduler(tmp_path, prepared):
    opt_file, name = _options('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, iters=400)
    states = tmp_path / 'experiments' / name / 'training_states'
    dump = tmp_path / 'dump'
    dump.mkdir()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, 'probe_train.py'), str(dump), '-opt', str(opt_file)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (states / '6.state').exists():
        assert proc.poll() is None and time.time() < deadline, 'training stopped before saving 6.state'
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # wherever the kill landed, every checkpoint under its final name is whole (atomic saves)
    saved = sorted(int(p.stem) for p in states.glob('*.state'))
    for path in [*(states / f'{it}.state' for it in saved), *(states.parent / 'models').glob('*.pth')]:
        torch.load(path, map_location='cpu', weights_only=True)
    last = max(saved)
    expected = torch.load(states / f'{last}.state', map_location='cpu', weights_only=True)
    # a newest state cut short (as BasicSR's own non-atomic save leaves it) is skipped, not fatal
    cut = states / f'{last + 1}.state'
    cut.write_bytes((states / f'{last}.state').read_bytes()[:100])

    text = opt_file.read_text().replace('total_iter: 400', f'total_iter: {last + 2}')
    opt_file.write_text(text)
    out = subprocess.run([sys.executable, os.path.join(HERE, 'probe_train.py'), str(dump), '-opt', str(opt_file),
                          '--auto_resume'], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert f'skipping unreadable training state {cut}' in log
    assert f'Resuming training from epoch: {expected["epoch"]}, iter: {last}.' in log
    assert re.search(rf'iter:\s+{last + 2}, ', log)
    resumed = torch.load(dump / 'resumed_rank0.pth', map_location='cpu', weights_only=True)
    assert resumed['schedulers'] == expected['schedulers']
    got, want = resumed['optimizers'][0], expected['optimizers'][0]
    assert got['param_groups'] == want['param_groups']
    assert got['state'].keys() == want['state'].keys()
    for key in want['state']:
        for field in ('step', 'exp_avg', 'exp_avg_sq'):
            assert torch.equal(got['state'][key][field], want['state'][key][field])


@pytest.mark.parametrize('frozen_g', [False, True])
def test_ddp_two_cpu_processes_train_identical_weights(tmp_path, prepared, tiny_teacher_file, frozen_g):
    if frozen_g:  # a student whose generator is frozen: DDP must not wait for G's gradients
        opt_file, _ = _options('train_kdsrnet_x4ST_tiny.yml', tmp_path, prepared, iters=4,
                               train={'freeze_generator': True}, pretrain_network_g=tiny_teacher_file,
                               pretrain_network_TA=tiny_teacher_file)
    else:
        opt_file, _ = _options('train_kdsrnet_x4TA_tiny.yml', tmp_path, prepared, iters=4)
    dump = tmp_path / 'dump'
    dump.mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    proc = subprocess.run([os.path.join(BIN, 'torchrun'), '--nproc_per_node=2', f'--master_port={free_port()}',
                           os.path.join(HERE, 'probe_train.py'), str(dump), '-opt', str(opt_file), '--launcher',
                           'pytorch'], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert 'World size (gpu number): 2' in log
    rank0 = torch.load(dump / 'final_rank0.pth', weights_only=True)
    rank1 = torch.load(dump / 'final_rank1.pth', weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # and training did change them (both ranks moved together)
    start = load_state_dict_file(str(next((tmp_path / 'experiments').glob('*/models/net_g_2.pth'))), 'params')
    encoder = 'E_st.E.0.weight' if frozen_g else 'E.E.0.weight'
    assert not torch.equal(start[encoder], rank0[encoder])
    assert torch.equal(start['G.head.0.weight'], rank0['G.head.0.weight']) is frozen_g


# ----------------------------------------------------------------- the authors' option files


@pytest.fixture(scope='module')
def full_size_checkpoints(tmp_path_factory):
    """KDSR-GAN-size teacher and student files in the authors' BasicSR format (random weights)."""
    from kdsr_arch import build_preset
    root = tmp_path_factory.mktemp('full')
    paths = {}
    for name, preset in (('KDSRT-rec.pth', 'KDSR_T-GAN'), ('KDSRS-rec.pth', 'KDSR_S-GAN')):
        state = build_preset(preset).state_dict()
        torch.save({'params': state, 'params_ema': state}, root / name)
        paths[name] = str(root / name)
    return paths


@pytest.mark.parametrize('name', ['train_kdsrnet_x4TA.yml', 'train_kdsrnet_x4ST.yml', 'train_kdsrgan_x4ST.yml',
                                  'train_kdsrgan_x4STV2.yml', 'test_kdsrnet_x4TA.yml', 'test_kdsrgan_x4ST.yml'])
def test_authors_option_files_build_their_models_with_only_paths_changed(name, tmp_path, full_size_checkpoints,
                                                                        vgg19_file, monkeypatch):
    with open(os.path.join(REPO, 'options', name)) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    is_train = name.startswith('train')
    for key, value in opt['path'].items():  # the placeholders -> our files
        if key.startswith('pretrain_network') and value:
            opt['path'][key] = full_size_checkpoints.get(os.path.basename(value), full_size_checkpoints['KDSRS-rec.pth'])
    monkeypatch.setenv('KDSR_VGG19_WEIGHTS', str(vgg19_file))
    opt.update(dist=False, rank=0, world_size=1, is_train=is_train, num_gpu=0)
    root = tmp_path / 'exp'
    opt['path'].update(experiments_root=str(root), models=str(root), log=str(root), training_states=str(root),
                       visualization=str(root), results_root=str(root))
    model = build_model(opt)
    assert type(model).__name__ == opt['model_type']
    net = model.get_bare_model(model.net_g)
    assert sum(p.numel() for p in net.parameters()) == (18_901_403 if 'TA' in name else 18_846_107)
    if is_train and opt['model_type'] != 'KDSRNetTAModel':
        assert sum(p.numel() for p in model.net_TA.parameters()) == 18_901_403
        assert not any(p.requires_grad for p in model.net_TA.parameters())


def test_extra_input_teacher_and_student_stages_train_through_the_recipe_script(tmp_path, prepared):
    """Stage 7 of the default model's recipe in small: a teacher with residual_input trains,
    scripts/transplant_model.py makes a highpass_input student of it, and that student distils."""
    from basicsr.utils.options import ordered_yaml
    from conftest import _opt_dict
    from kdsr_arch import detect_kdsr

    def write(name, label, **path):
        opt = _opt_dict(name, prepared, **path)
        opt['network_g']['residual_input' if 'TA' in name else 'highpass_input'] = True
        if 'network_TA' in opt:
            opt['network_TA']['residual_input'] = True
            opt['path']['strict_load_g'] = True
        out = tmp_path / f'{label}.yml'
        out.write_text(yaml.dump(opt, Dumper=ordered_yaml()[1]))
        return out, opt['name']

    opt_file, name = write('train_kdsrnet_x4TA_tiny.yml', 'teacher')
    log = _train(opt_file, tmp_path)
    assert 'l_pix' in log
    teacher = tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth'
    assert detect_kdsr(load_state_dict_file(str(teacher))).options()['residual_input'] is True
    init = tmp_path / 'student_init.pth'
    script = os.path.join(REPO, 'scripts', 'transplant_model.py')
    proc = run_py(args=[script, str(teacher), str(init), '--arch', 'BlindSR_ST', '--extra-input'])
    assert "'highpass_input': True" in proc.stdout
    again = run_py(args=[script, str(teacher), str(init), '--arch', 'BlindSR_ST'], check=False)
    assert again.returncode != 0 and 'exists' in again.stderr  # never overwritten
    opt_file, name = write('train_kdsrnet_x4ST_tiny.yml', 'student', pretrain_network_g=str(init),
                           pretrain_network_TA=str(teacher))
    log = _train(opt_file, tmp_path)
    assert re.search(r'l_kd: [\d.e+-]+', log)
    student = load_state_dict_file(str(tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth'))
    assert detect_kdsr(student).options()['highpass_input'] is True
    first = student['E_st.E.0.weight']
    assert first[:, 3:].abs().sum() > 0  # the high-pass channels, zero at the start, have learnt
    # stage 8's start: the student's encoder with the teacher's generator
    trained = tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth'
    grafted = tmp_path / 'grafted.pth'
    run_py(args=[script, str(trained), str(grafted), '--arch', 'BlindSR_ST', '--extra-input', '--generator',
                 str(teacher)])
    state, teacher_state = load_state_dict_file(str(grafted)), load_state_dict_file(str(teacher))
    assert all(torch.equal(state[k], teacher_state[k]) for k in state if k.startswith('G.'))
    assert torch.equal(state['E_st.E.0.weight'], first)
    bad = run_py(args=[script, str(trained), str(tmp_path / 'x.pth'), '--arch', 'BlindSR_ST', '--generator',
                       str(tmp_path / 'missing.pth')], check=False)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [
        f'transplant_model.py: error: {tmp_path / "missing.pth"}: checkpoint file not found.']
    assert not (tmp_path / 'x.pth').exists()


def test_select_checkpoint_picks_the_best_logged_validation_and_exports_it(teacher_run, tmp_path):
    """scripts/select_checkpoint.py (the GPU recipe's step 4) reads each validation's PSNR off a
    real run's log, picks the saved checkpoint with the best mean, and exports it and the last."""
    exp, log = teacher_run
    script = os.path.join(REPO, 'scripts', 'select_checkpoint.py')
    proc = run_py(args=[script, str(exp), str(tmp_path / 'picked')])
    psnrs = _psnrs(log)  # validations at iterations 2 and 4, then the final one at 4
    by_iter = {2: psnrs[0], 4: psnrs[-1]}
    best = max(by_iter, key=by_iter.get)
    rows = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r'^(\d+) ([\d.]+) [\d.]+$', proc.stdout, re.M)}
    assert rows == pytest.approx(by_iter, abs=1e-4)
    assert f'best mean: iteration {best} ' in proc.stdout
    assert sorted(os.listdir(tmp_path)) == sorted({f'picked_{best}.pth', 'picked_4.pth'})
    exported = torch.load(tmp_path / f'picked_{best}.pth', weights_only=True)
    saved = torch.load(exp / 'models' / f'net_g_{best}.pth', weights_only=True)
    assert set(exported) == {'params_ema'}
    assert all(torch.equal(exported['params_ema'][k], v) for k, v in saved['params_ema'].items())
    # a folder that is no run: one line naming it, nothing written
    empty = tmp_path / 'not_a_run'
    empty.mkdir()
    bad = run_py(args=[script, str(empty), str(tmp_path / 'x')], check=False)
    assert bad.returncode != 0 and str(empty) in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob('x*'))
