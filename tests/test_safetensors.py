""".safetensors weights wherever weights are read: load_kdsr, kdsr-export, kdsr-upscale, training options."""
import os
import re
import sys

import cv2
import numpy as np
import pytest
import torch
from basicsr.models import build_model

from kdsr_arch import BlindSR_TA
from kdsr_arch.checkpoint import SafetensorsMissingError, load_kdsr, load_state_dict_file, weights_format
from kdsr_model.errors import OptionError
from kdsr_model.export import export_safetensors, main as export_main
from kdsr_model.upscaler import KDSRUpscaler
from conftest import run_tool, save_student
from conftest import _in_process

st = pytest.importorskip('safetensors.torch')

TINY = dict(n_feats=16, n_encoder_res=2, n_sr_blocks=4)  # the size of options/tiny/*.yml (x4)


def _same_output(a, b, lq):
    with torch.no_grad():
        return torch.equal(a.eval()(lq), b.eval()(lq))


@pytest.fixture(scope='module')
def student(tmp_path_factory):
    """A tiny student as .pth (BasicSR format) and its net loaded from there."""
    path = save_student(tmp_path_factory.mktemp('st') / 'student.pth', seed=1)
    return path, load_kdsr(path)[0]


def test_student_safetensors_loads_with_the_pth_outputs(student, tmp_path):
    pth, net = student
    state = load_state_dict_file(pth)
    other = {k: v + 0.01 for k, v in state.items()}  # a second set of weights, for params vs params_ema
    st.save_file(state, str(tmp_path / 'flat.safetensors'))
    st.save_file(state, str(tmp_path / 'weights.bin'))  # told by content, not by name
    st.save_file({**{'params_ema.' + k: v for k, v in state.items()}, **{'params.' + k: v for k, v in other.items()}},
                 str(tmp_path / 'prefixed.safetensors'))
    assert weights_format(str(tmp_path / 'weights.bin')) == 'safetensors' and weights_format(pth) == 'pytorch'
    lq = torch.rand(1, 3, 9, 7)
    for name in ('flat.safetensors', 'weights.bin', 'prefixed.safetensors'):
        loaded, spec = load_kdsr(str(tmp_path / name))
        assert spec.options() == {'type': 'BlindSR_ST', 'n_feats': 8, 'n_encoder_res': 2, 'scale': 4, 'n_sr_blocks': 2}
        assert _same_output(loaded, net, lq), name
    flat, _ = load_kdsr(str(tmp_path / 'flat.safetensors'), param_key='params')  # nothing to choose: ignored
    assert _same_output(flat, net, lq)
    params, _ = load_kdsr(str(tmp_path / 'prefixed.safetensors'), param_key='params')
    assert torch.equal(params.state_dict()['G.head.0.weight'], other['G.head.0.weight'])


def test_export_safetensors_round_trips(student, tmp_path):
    pth, net = student
    out = tmp_path / 'kdsr_x4.safetensors'
    proc = run_tool('kdsr-export', '-m', pth, '-o', out, '--format', 'safetensors', check=0)
    assert re.search(r'wrote .*kdsr_x4.safetensors \(safetensors, fp32, BlindSR_ST x4; re-loaded with load_kdsr, '
                     r'max abs diff vs PyTorch 0.00e\+00', proc.stdout), proc.stdout
    assert os.listdir(tmp_path) == ['kdsr_x4.safetensors']  # no temporary file left
    with st.safe_open(str(out), 'pt') as f:
        meta = f.metadata()
        assert meta.pop('kdsr_version') and meta == {'format': 'pt', 'architecture': 'BlindSR_ST', 'n_feats': '8',
                                                     'n_encoder_res': '2', 'scale': '4', 'n_sr_blocks': '2',
                                                     'dtype': 'float32'}
        assert set(f.keys()) == set(net.state_dict())  # flat, the net's own keys (what spandrel reads)
    lq = torch.rand(2, 3, 8, 11)
    loaded, _ = load_kdsr(str(out))
    assert _same_output(loaded, net, lq)
    spandrel = pytest.importorskip('spandrel')
    import kdsr_model.spandrel_support as kdsr_spandrel
    kdsr_spandrel.register()
    with torch.no_grad():
        assert torch.equal(spandrel.ModelLoader().load_from_file(str(out)).eval()(lq), net.eval()(lq))

    half = tmp_path / 'kdsr_fp16.safetensors'  # the API, and float16 weights that load into a float32 net
    assert export_safetensors(net, str(half), fp16=True) <= 2e-2
    assert all(v.dtype == torch.float16 for v in st.load_file(str(half)).values())
    assert load_kdsr(str(half))[1] == load_kdsr(str(out))[1]


def test_upscale_with_a_safetensors_model(student, tmp_path):
    pth, _ = student
    model = tmp_path / 'model.safetensors'
    st.save_file(load_state_dict_file(pth), str(model))
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'in.png'), img)
    run_tool('kdsr-upscale', '-i', tmp_path / 'in.png', '-o', tmp_path / 'out', '-m', model, '--device', 'cpu',
             '--fp32', check=0)
    out = cv2.imread(str(tmp_path / 'out' / 'in_out.png'), cv2.IMREAD_UNCHANGED)
    assert out.shape == (64, 64, 3)
    expected, _ = KDSRUpscaler(pth, device='cpu', bf16=False).enhance(img)
    assert np.array_equal(out, expected)


@pytest.fixture(scope='module')
def teacher_safetensors(tmp_path_factory):
    """A teacher of the tiny options' size, written by ``kdsr-export --format safetensors`` (in-process)."""
    root = tmp_path_factory.mktemp('ta')
    torch.manual_seed(2)
    teacher = BlindSR_TA(scale=4, **TINY)
    torch.save({'params_ema': teacher.state_dict()}, root / 'teacher.pth')
    assert export_main(['-m', str(root / 'teacher.pth'), '-o', str(root / 'teacher.safetensors'), '--format',
                        'safetensors']) == 0
    return str(root / 'teacher.safetensors'), teacher.state_dict()


@pytest.mark.parametrize('start', ['teacher', 'student.safetensors', 'student.pth'])
def test_tiny_student_options_read_safetensors(tmp_path, teacher_safetensors, start):
    teacher_file, teacher = teacher_safetensors
    if start == 'teacher':  # the student's G starts from the teacher's (take_teacher_init)
        init = teacher_file
    else:  # a student, read by load_network (param_key_g: params_ema, strict_load_g as given)
        init = save_student(tmp_path / 'student.pth', seed=3, **TINY)
        if start.endswith('.safetensors'):
            st.save_file(load_state_dict_file(init), str(tmp_path / start))
            init = str(tmp_path / start)
    # building a model reads no dataset: tmp_path stands in for test_training's prepared data
    opt = _in_process('train_kdsrnet_x4ST_tiny.yml', tmp_path, tmp_path, pretrain_network_g=init,
                      pretrain_network_TA=teacher_file, strict_load_g=True)
    model = build_model(opt)
    assert all(torch.equal(v, teacher[k]) for k, v in model.net_TA.state_dict().items())
    expected = teacher if start == 'teacher' else load_state_dict_file(init)
    for net in (model.net_g, model.net_g_ema):
        state = model.get_bare_model(net).state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in state.items() if k.startswith('G.'))


def test_broken_or_foreign_safetensors_are_one_line_errors(student, tmp_path, capsys):
    pth, _ = student
    good = st.save(load_state_dict_file(pth))
    cases = {
        'cut.safetensors': (good[:len(good) // 2], 'not a loadable safetensors file'),
        'junk.safetensors': (b'no tensors here' * 8, 'not a loadable safetensors file'),
        'conv.safetensors': (st.save(torch.nn.Conv2d(3, 3, 3).state_dict()), 'not a KDSR'),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=f'^{re.escape(str(path))}: {message}'):
            load_kdsr(str(path))
        assert export_main(['-m', str(path), '-o', str(tmp_path / 'x.onnx')]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f'kdsr-export: error: {path}: {message}'), lines
    opt = _in_process('train_kdsrnet_x4ST_tiny.yml', tmp_path, tmp_path, pretrain_network_g=None,
                      pretrain_network_TA=str(tmp_path / 'cut.safetensors'))
    with pytest.raises(OptionError, match='^path:pretrain_network_TA: .*cut.safetensors: not a loadable safetensors'):
        build_model(opt)
    opt = _in_process('train_kdsrnet_x4TA_tiny.yml', tmp_path, tmp_path, pretrain_network_g=str(tmp_path / 'conv.pth'))
    torch.save({'params': torch.nn.Conv2d(3, 3, 3).state_dict()}, opt['path']['pretrain_network_g'])
    with pytest.raises(OptionError, match='^path:pretrain_network_g: .*conv.pth: does not load into BlindSR_TA: '
                       'Missing key'):
        build_model(opt)  # BasicSR's load_network, through load_state_dict_file


def test_without_the_safetensors_package(student, tmp_path, monkeypatch, capsys):
    pth, net = student
    st.save_file(load_state_dict_file(pth), str(tmp_path / 'model.safetensors'))
    monkeypatch.setitem(sys.modules, 'safetensors', None)
    monkeypatch.setitem(sys.modules, 'safetensors.torch', None)
    with pytest.raises(SafetensorsMissingError, match=r"model.safetensors: install safetensors .*\(pip install "
                       r"'kdsr\[safetensors\]'\)\.$"):
        load_kdsr(str(tmp_path / 'model.safetensors'))
    assert _same_output(load_kdsr(pth)[0], net, torch.rand(1, 3, 6, 6))  # .pth never needs it
    out = tmp_path / 'out.safetensors'
    assert export_main(['-m', pth, '-o', str(out), '--format', 'safetensors']) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"kdsr-export: error: {out}: install safetensors for .safetensors files (pip install 'kdsr[safetensors]')."]
