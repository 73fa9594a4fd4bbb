import os

import pytest
import torch

from kdsr_arch import (BlindSR_ST, BlindSR_TA, KDSRSpec, build_preset, detect_kdsr, init_student_from_teacher,
                       load_kdsr, load_state_dict_file)

SMALL = dict(n_feats=8, n_encoder_res=2, n_sr_blocks=3)


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


def _perturbed(net, seed):
    """A net whose weights differ from any fresh init, so a load is visible in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn(p.shape, generator=g))
    return net


def _same_output(a, b, *inputs):
    with torch.no_grad():
        return torch.equal(a.eval()(*inputs), b.eval()(*inputs))


@pytest.mark.parametrize('fmt', ['basicsr', 'classic', 'dataparallel'])
def test_authors_formats_load_strictly_and_give_the_same_output(tmp_path, fmt):
    net = _perturbed(BlindSR_ST(scale=4, **SMALL), 0)
    ema = _perturbed(BlindSR_ST(scale=4, **SMALL), 1)
    if fmt == 'basicsr':  # KDSR-GAN releases: {'params', 'params_ema'}
        path = _save({'params': net.state_dict(), 'params_ema': ema.state_dict()}, tmp_path / 'KDSRS-GAN.pth')
    elif fmt == 'classic':  # KDSR-classic releases: raw state_dict
        path = _save(ema.state_dict(), tmp_path / 'KDSRsM_iso_x4.pt')
    else:
        path = _save({'module.' + k: v for k, v in ema.state_dict().items()}, tmp_path / 'ddp.pth')
    loaded, spec = load_kdsr(path)
    assert spec == KDSRSpec('BlindSR_ST', 8, 2, 4, 3)
    lq = torch.rand(1, 3, 7, 6)
    assert _same_output(loaded, ema, lq)  # params_ema preferred, as the authors' ymls read it

    # the strict BasicSR way the authors' options use (param_key_g: params_ema, strict_load_g: true)
    fresh = BlindSR_ST(scale=4, **SMALL)
    fresh.load_state_dict(load_state_dict_file(path), strict=True)
    assert _same_output(fresh, ema, lq)


def test_param_key_selects_params(tmp_path):
    net, ema = _perturbed(BlindSR_ST(**SMALL), 0), _perturbed(BlindSR_ST(**SMALL), 1)
    path = _save({'params': net.state_dict(), 'params_ema': ema.state_dict()}, tmp_path / 'net_g_10.pth')
    loaded, _ = load_kdsr(path, param_key='params')
    assert _same_output(loaded, net, torch.rand(1, 3, 5, 5))


@pytest.mark.parametrize('preset,scale', [('KDSR_S-GAN', 4), ('KDSR_T-GAN', 4), ('KDSR_S-M', 2), ('KDSR_T-M', 3),
                                          ('KDSR_S-L', 3), ('KDSR_T-L', 2)])
def test_detection_reads_every_hyper_parameter_from_shapes(preset, scale):
    net = build_preset(preset, scale=scale)
    spec = detect_kdsr(net.state_dict())
    assert spec.options() == {
        'type': type(net).__name__, 'scale': scale, 'n_feats': net.G.n_feats,
        'n_encoder_res': {'M': 9, 'L': 5, 'GAN': 6}[preset.split('-')[1]],
        'n_sr_blocks': {'M': 53, 'L': 28, 'GAN': 42}[preset.split('-')[1]]
    }
    assert spec.is_teacher == preset.startswith('KDSR_T')


def test_teacher_with_inconsistent_encoder_input_is_rejected():
    sd = BlindSR_TA(scale=2, **SMALL).state_dict()
    sd['E.E.0.weight'] = torch.zeros(8, 51, 3, 3)  # x4 input channels on an x2 net
    with pytest.raises(ValueError, match='encoder input has 51 channels, expected 15'):
        detect_kdsr(sd, source='t.pth')


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth: checkpoint file not found'):
        load_kdsr(str(tmp_path / 'nope.pth'))


def test_garbage_file_is_a_clear_error(tmp_path):
    bad = tmp_path / 'broken.pth'
    bad.write_bytes(b'not a checkpoint at all')
    with pytest.raises(ValueError, match='broken.pth: not a loadable PyTorch weights file'):
        load_kdsr(str(bad))


def test_non_kdsr_weights_are_named_in_the_error(tmp_path):
    path = _save({'params': torch.nn.Conv2d(3, 3, 3).state_dict()}, tmp_path / 'esrgan.pth')
    with pytest.raises(ValueError, match='esrgan.pth: not a KDSR'):
        load_kdsr(path)


def test_training_state_is_not_taken_for_weights(tmp_path):
    path = _save({'iter': 10, 'optimizers': []}, tmp_path / '10.state')
    with pytest.raises(ValueError, match='10.state'):
        load_kdsr(path)


def test_pickled_objects_are_refused(tmp_path):
    path = _save(BlindSR_ST(**SMALL), tmp_path / 'whole_model.pth')  # a pickled module, not a state_dict
    with pytest.raises(ValueError, match='whole_model.pth: not a loadable PyTorch weights file'):
        load_kdsr(path)


def test_student_from_teacher_authors_mode_copies_g_only(tmp_path):
    teacher = _perturbed(BlindSR_TA(scale=4, **SMALL), 3)
    student = BlindSR_ST(scale=4, **SMALL)
    enc_before = {k: v.clone() for k, v in student.E_st.state_dict().items()}
    path = _save({'params': teacher.state_dict(), 'params_ema': teacher.state_dict()}, tmp_path / 'KDSRT-rec.pth')
    report = init_student_from_teacher(student, path)
    for key, value in student.G.state_dict().items():
        assert torch.equal(value, teacher.G.state_dict()[key]), key
    for key, value in student.E_st.state_dict().items():
        assert torch.equal(value, enc_before[key]), key
    assert all(k.startswith('G.') for k in report['loaded'])
    assert len(report['loaded']) == len(student.G.state_dict())
    assert len(report['skipped']) == len(student.E_st.state_dict())


def test_student_from_teacher_paper_mode_also_copies_matching_encoder_layers():
    teacher = _perturbed(BlindSR_TA(scale=2, **SMALL), 4)
    student = BlindSR_ST(scale=2, **SMALL)
    first_conv = student.E_st.E[0].weight.clone(), student.E_st.E[0].bias.clone()
    report = init_student_from_teacher(student, teacher, mode='paper')
    assert report['skipped'] == ['E_st.E.0.bias', 'E_st.E.0.weight']  # the whole first conv
    t_enc = teacher.E.state_dict()
    for key, value in student.E_st.state_dict().items():
        if not key.startswith('E.0.'):
            assert torch.equal(value, t_enc[key]), key
    assert torch.equal(student.E_st.E[0].weight, first_conv[0])
    assert torch.equal(student.E_st.E[0].bias, first_conv[1])


def test_student_from_teacher_of_another_width_is_a_clear_error():
    teacher = BlindSR_TA(scale=4, n_feats=16, n_encoder_res=2, n_sr_blocks=3)
    with pytest.raises(ValueError, match='differ in width, depth or scale'):
        init_student_from_teacher(BlindSR_ST(scale=4, **SMALL), teacher)
    with pytest.raises(ValueError, match='differ in width, depth or scale'):
        init_student_from_teacher(BlindSR_ST(scale=2, **SMALL), BlindSR_TA(scale=4, **SMALL))


def test_incomplete_checkpoint_names_file_and_missing_key(tmp_path):
    sd = BlindSR_ST(**SMALL).state_dict()
    del sd['G.body.0.body.1.conv1.bias']
    path = _save(sd, tmp_path / 'cut.pth')
    with pytest.raises(ValueError, match=r'cut.pth: does not load into BlindSR_ST: Missing key.*conv1.bias'):
        load_kdsr(path)


def test_training_checkpoints_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from kdsr_model.errors import KDSRError
    from kdsr_model.models import saving

    target = tmp_path / 'net_g_8.pth'
    saving.save_atomic({'params': {'w': torch.ones(3)}}, str(target))
    assert torch.equal(torch.load(target, weights_only=True)['params']['w'], torch.ones(3))

    def dies_half_way(obj, path):
        with open(path, 'wb') as f:
            f.write(b'PK\x03\x04 half a checkpoint')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(saving.torch, 'save', dies_half_way)
    monkeypatch.setattr(saving.time, 'sleep', lambda s: None)
    with pytest.raises(KDSRError, match='could not save .*net_g_8.pth'):
        saving.save_atomic({'params': {}}, str(target))
    # the earlier checkpoint is intact and no partial file is left beside it
    assert torch.equal(torch.load(target, weights_only=True)['params']['w'], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['net_g_8.pth']


def test_interpolate_models_script_blends_weights_and_refuses_other_nets(tmp_path):
    """scripts/interpolate_models.py (the weight-space blend of docs/MODEL.md "Stage 18"): OUT is
    (1 - a) A + a B tensor by tensor (with --part, that part only and A elsewhere), loads as the same
    net, and a different net, a bad alpha or an existing OUT is a one-line error that writes nothing."""
    from conftest import REPO, error_lines, run_py, save_student
    a, b = save_student(tmp_path / 'a.pth', seed=0), save_student(tmp_path / 'b.pth', seed=1)
    wide = save_student(tmp_path / 'wide.pth', n_feats=16, seed=2)
    script = os.path.join(REPO, 'scripts', 'interpolate_models.py')
    out = tmp_path / 'soup.pth'
    run_py(args=[script, a, b, '0.25', str(out)])
    sa, sb = load_state_dict_file(a), load_state_dict_file(b)
    soup = torch.load(out, weights_only=True)
    assert list(soup) == ['params_ema']
    soup = soup['params_ema']
    assert soup.keys() == sa.keys()
    assert all(torch.allclose(soup[k], 0.75 * sa[k] + 0.25 * sb[k], atol=1e-6) for k in sa)
    assert not torch.equal(soup['G.head.0.weight'], sa['G.head.0.weight'])  # the two nets differ
    assert detect_kdsr(soup) == detect_kdsr(sa)

    for part, blended in (('G', 'G.'), ('encoder', 'E_st.')):  # one part blended, the rest is A's
        out_part = tmp_path / f'soup_{part}.pth'
        run_py(args=[script, a, b, '0.25', str(out_part), '--part', part])
        soup = torch.load(out_part, weights_only=True)['params_ema']
        assert soup.keys() == sa.keys() and any(k.startswith(blended) for k in sa)
        for k in sa:
            want = 0.75 * sa[k] + 0.25 * sb[k] if k.startswith(blended) else sa[k]
            assert torch.allclose(soup[k], want, atol=1e-6), (part, k)

    other = run_py(args=[script, a, wide, '0.5', str(tmp_path / 'x.pth')], check=False)
    assert other.returncode != 0 and len(error_lines(other)) == 1 and 'different nets' in other.stderr
    alpha = run_py(args=[script, a, b, '1.5', str(tmp_path / 'x.pth')], check=False)
    assert alpha.returncode != 0 and 'alpha 1.5 is outside [0, 1]' in alpha.stderr
    before = out.read_bytes()
    again = run_py(args=[script, b, a, '0.5', str(out)], check=False)
    assert again.returncode != 0 and 'exists' in again.stderr and out.read_bytes() == before
    assert not (tmp_path / 'x.pth').exists()
