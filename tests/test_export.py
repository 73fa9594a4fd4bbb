"""kdsr-export and the export API: ONNX (onnxruntime), TorchScript and torch.export with dynamic shapes."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from kdsr_arch import IDR_DDC, BlindSR_ST, BlindSR_TA
from kdsr_model.export import EXPORT_SHAPE, ExportableStudent, export_onnx, export_program, export_torchscript, main

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

BIN = os.path.dirname(sys.executable)
TINY = dict(n_feats=16, n_encoder_res=1, scale=4, n_sr_blocks=2)
# Other sizes than the traced EXPORT_SHAPE, odd and even, batch 1 and 2.
SHAPES = ((1, 3, 19, 27), (2, 3, 33, 14))


@pytest.fixture(scope='module')
def student(tmp_path_factory):
    torch.manual_seed(0)
    net = BlindSR_ST(**TINY).eval()
    path = tmp_path_factory.mktemp('model') / 'student.pth'
    torch.save({'params': net.state_dict()}, path)
    return net, str(path)


def cli(*args):
    return subprocess.run([os.path.join(BIN, 'kdsr-export'), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def assert_matches(run, net, tol=1e-4):
    """``run`` equals the PyTorch net at SHAPES, and a batch of 2 equals its samples run alone."""
    gen = torch.Generator().manual_seed(1)
    for shape in SHAPES:
        assert shape != EXPORT_SHAPE
        x = torch.rand(shape, generator=gen)
        with torch.no_grad():
            ref = net(x)
        out = torch.as_tensor(np.asarray(run(x)))
        assert out.shape == ref.shape == (shape[0], 3, 4 * shape[2], 4 * shape[3])
        assert (out - ref).abs().max().item() <= tol
        if shape[0] == 2:
            alone = torch.cat([torch.as_tensor(np.asarray(run(x[i:i + 1]))) for i in range(2)])
            assert (out - alone).abs().max().item() <= tol


def test_shifted_ddc_is_the_grouped_conv(student):
    net, _ = student
    x = torch.rand(3, 3, 11, 7)
    with torch.no_grad():
        assert (ExportableStudent(net)(x) - net(x)).abs().max().item() < 1e-5
        assert torch.equal(ExportableStudent(net, shifted_ddc=False)(x), net(x))
    assert isinstance(net.G.body[0].body[0].da_conv1, IDR_DDC) and net.G.head[0].weight.requires_grad  # not changed


def test_cli_onnx_has_dynamic_batch_height_width(student, tmp_path):
    net, ckpt = student
    out = tmp_path / 'sub' / 'kdsr.onnx'
    proc = cli('-m', ckpt, '-o', out)
    assert proc.returncode == 0, proc.stderr
    assert 'kdsr-export: wrote' in proc.stdout and 'max abs diff vs PyTorch' in proc.stdout
    assert os.listdir(out.parent) == ['kdsr.onnx']  # no temporary file left
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*model.graph.input,
                                                                                       *model.graph.output)]
    assert dims == [['batch', 3, 'height', 'width'], ['batch', 3, 'sr_height', 'sr_width']]
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    assert_matches(lambda x: session.run(None, {'lq': x.numpy()})[0], net)


def test_api_onnx_fp16_and_opset(student, tmp_path):
    net, _ = student
    path = tmp_path / 'kdsr_fp16.onnx'
    diff = export_onnx(net, str(path), opset=13, fp16=True)
    assert diff <= 2e-2
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 13
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert_matches(lambda x: session.run(None, {'lq': x.numpy()})[0], net, tol=2e-2)


@pytest.mark.filterwarnings('ignore:`torch.jit.load` is deprecated')
def test_torchscript_loads_and_matches(student, tmp_path):
    net, _ = student
    path = tmp_path / 'kdsr.pt'
    assert export_torchscript(net, str(path)) <= 1e-4
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        assert_matches(loaded, net)


def test_torch_export_loads_and_matches(student, tmp_path):
    net, _ = student
    with pytest.raises(ValueError, match='must end in .pt2'):
        export_program(net, str(tmp_path / 'kdsr.pt'))
    path = tmp_path / 'kdsr.pt2'
    assert export_program(net, str(path)) <= 1e-4
    loaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        assert_matches(loaded, net)
    assert os.listdir(tmp_path) == ['kdsr.pt2']


def test_teacher_and_bad_files_are_one_line_errors(tmp_path, capsys):
    teacher = tmp_path / 'KDSRT.pth'
    torch.save({'params_ema': BlindSR_TA(**TINY).state_dict()}, teacher)
    proc = cli('-m', teacher, '-o', tmp_path / 't.onnx')
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f'kdsr-export: error: {teacher}: a KDSR teacher (BlindSR_TA) needs '
                                                'the HR image to run; export a student checkpoint.']
    junk = tmp_path / 'junk.pth'
    junk.write_text('hello')
    assert main(['-m', str(junk), '-o', str(tmp_path / 'j.onnx')]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'kdsr-export: error: {junk}: not a loadable PyTorch weights file')
    assert main(['-m', str(tmp_path / 'missing.pth'), '-o', str(tmp_path / 'm.onnx')]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f'kdsr-export: error: {tmp_path / "missing.pth"}: '
                                                            'checkpoint file not found.']
    assert sorted(os.listdir(tmp_path)) == ['KDSRT.pth', 'junk.pth']


def test_refuses_the_checkpoint_as_output_and_a_failed_check_writes_nothing(student, tmp_path, capsys):
    net, ckpt = student
    before = open(ckpt, 'rb').read()
    assert main(['-m', ckpt, '-o', ckpt]) == 2
    assert 'is the input checkpoint' in capsys.readouterr().err
    assert open(ckpt, 'rb').read() == before
    assert main(['-m', ckpt, '-o', str(tmp_path / 'x.onnx'), '--opset', '9']) == 2
    assert capsys.readouterr().err.strip().splitlines() == ['kdsr-export: error: ONNX opset 9: this exporter writes '
                                                            'opsets 10 to 20.']

    out = tmp_path / 'kdsr.onnx'
    out.write_bytes(b'previous export')
    assert main(['-m', ckpt, '-o', str(out), '--tol=-1']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f'kdsr-export: check failed, {out} not written: onnxruntime differs')
    assert os.listdir(tmp_path) == ['kdsr.onnx'] and out.read_bytes() == b'previous export'


def test_a_highpass_input_student_exports_to_onnx(tmp_path):
    """The student's fixed high-pass input (reflect pad + box blur) is part of the exported graph."""
    torch.manual_seed(2)
    net = BlindSR_ST(**TINY, highpass_input=True).eval()
    path = tmp_path / 'hp.onnx'
    export_onnx(net, str(path))
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert_matches(lambda x: session.run(None, {'lq': x.numpy()})[0], net)
