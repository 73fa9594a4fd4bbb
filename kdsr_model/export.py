"""``kdsr-export``: a KDSR student as ONNX, TorchScript or a torch.export program, or its weights as safetensors.

    kdsr-export -m KDSRS-GAN.pth -o kdsr_x4.onnx                      # ONNX, opset 17, checked by onnxruntime
    kdsr-export -m KDSRS-GAN.pth -o kdsr_x4.pt --format torchscript  # torch.jit.load
    kdsr-export -m KDSRS-GAN.pth -o kdsr_x4.pt2 --format export      # torch.export.load
    kdsr-export -m KDSRS-GAN.pth -o kdsr_x4.safetensors --format safetensors  # load_kdsr, spandrel

Every graph maps an image ``(N, 3, H, W)`` float32 in [0, 1] to the SR image
``(N, 3, s*H, s*W)``, with N, H and W dynamic; the IDR is computed inside from the input.
``--fp16`` keeps float32 input and output and runs the net in half precision inside.

ONNX's ``Conv`` takes ``group`` as a constant attribute, so the students' dynamic depthwise
conv (``IDR_DDC``: the batch folded into the groups of one grouped conv) cannot be exported
as it is with a dynamic batch; for ONNX and TorchScript it is rewritten as the nine shifted
multiply-adds it stands for (:class:`ShiftedDDC`, the same function). torch.export keeps
the grouped conv (its group count is symbolic there).

``--format safetensors`` writes the net's state_dict, flat (the keys of the ``.pth`` without
``params``/``params_ema``: the EMA weights when the checkpoint has them), with the metadata
``format`` (``pt``), ``architecture``, ``scale``, ``n_feats``, ``n_encoder_res``,
``n_sr_blocks``, ``dtype`` and ``kdsr_version`` as strings. It is the one format a teacher can
be written in too (its weights only; e.g. for ``path:pretrain_network_TA``). ``--fp16`` stores
float16 weights, which load into a float32 net.

Outputs are written to a temporary file beside the output, checked there (by default:
onnxruntime, the TorchScript or torch.export loader, or ``load_kdsr`` for safetensors, on
inputs of other sizes than the one traced, against the PyTorch net in float32) and only then
renamed to the output name.
"""
import argparse
import copy
import os
import sys
import warnings
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from .errors import OptionError, tool
from .io import atomic_output, first_line

FORMATS = ('onnx', 'torchscript', 'export', 'safetensors')
DEFAULT_OPSET = 17
OPSETS = range(10, 21)  # dynamic Slice needs 10; torch.onnx's TorchScript-based exporter supports up to 20
EXPORT_SHAPE = (2, 3, 32, 32)  # the input traced; the check shapes below differ in N, H and W
CHECK_SHAPES = ((1, 3, 23, 41), (3, 3, 40, 17))
TOLERANCE = {False: 1e-4, True: 2e-2}  # max abs diff vs the float32 PyTorch net, by fp16


class ExportCheckError(ValueError):
    """The exported graph's output differs from PyTorch's by more than the tolerance."""


class ShiftedDDC(nn.Module):
    """``IDR_DDC`` as nine shifted multiply-adds, for exporters that need a constant group count.

    out[b, c] = sum_{i, j} k[b, c, i, j] * pad(x)[b, c, i:i + H, j:j + W], which is the
    grouped cross-correlation ``IDR_DDC`` computes, with any batch size.

    Args:
        ddc (IDR_DDC): The module to rewrite; its kernel MLP is shared, not copied.
    """

    def __init__(self, ddc):
        super().__init__()
        self.n_feats = ddc.n_feats
        self.kernel = ddc.kernel

    def forward(self, x, idr):
        h, w = x.shape[-2:]
        k = self.kernel(idr).to(x.dtype).reshape(-1, self.n_feats, 3, 3)
        xp = F.pad(x, (1, 1, 1, 1))
        out = xp[:, :, :h, :w] * k[:, :, 0, 0, None, None]
        for i in range(3):
            for j in range(3):
                if i or j:
                    out = out + xp[:, :, i:i + h, j:j + w] * k[:, :, i, j, None, None]
        return out


class ExportableStudent(nn.Module):
    """A CPU copy of a ``BlindSR_ST`` in eval mode as one function: image -> SR image.

    Exports are traced on the CPU; the files run on any device their runtime supports.

    Args:
        net (BlindSR_ST): The student; it is copied, not changed.
        fp16 (bool): Run the net in half precision (input and output stay float32).
            Default: False.
        shifted_ddc (bool): Replace every ``IDR_DDC`` by :class:`ShiftedDDC`. Default: True.
    """

    def __init__(self, net, fp16=False, shifted_ddc=True):
        super().__init__()
        from kdsr_arch.kdsr_arch import IDR_DDC

        if not hasattr(net, 'E_st'):
            raise ValueError(f'{type(net).__name__}: only a KDSR student (BlindSR_ST) can be exported; a teacher '
                             'needs the HR image.')
        self.net = copy.deepcopy(net).cpu().float().eval().requires_grad_(False)
        if shifted_ddc:
            for module in list(self.net.modules()):
                for name, child in module.named_children():
                    if isinstance(child, IDR_DDC):
                        setattr(module, name, ShiftedDDC(child))
        self.dtype = torch.float16 if fp16 else torch.float32
        self.net.to(self.dtype)

    def forward(self, lq):
        return self.net(lq.to(self.dtype)).float()


@contextmanager
def _quiet():
    """Silence the exporters' tracer and deprecation warnings (the check is what tells)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        yield


def max_abs_diff(run, net, shapes=CHECK_SHAPES, seed=0):
    """Largest absolute difference between ``run(x)`` and the float32 PyTorch ``net(x)``, on the CPU.

    Args:
        run (callable): float32 tensor (N, 3, H, W) -> SR tensor.
        net (BlindSR_ST): The reference net.
        shapes (tuple): Input shapes to try, each with random values in [0, 1].
        seed (int): Seed of the random inputs.
    """
    ref_net = copy.deepcopy(net).cpu().float().eval()
    gen = torch.Generator().manual_seed(seed)
    diff = 0.0
    with torch.no_grad():
        for shape in shapes:
            x = torch.rand(shape, generator=gen)
            ref = ref_net(x)
            out = torch.as_tensor(run(x)).float()
            if out.shape != ref.shape:
                raise ExportCheckError(f'output shape {tuple(out.shape)} for input {tuple(shape)}, expected '
                                       f'{tuple(ref.shape)}')
            diff = max(diff, (out - ref).abs().max().item())
    return diff


def onnx_runner(path):
    """An onnxruntime (CPU) session of an exported file as a function: float32 tensor -> array."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return lambda x: session.run(None, {'lq': x.numpy()})[0]


def _check(diff, fp16, tol, what):
    tol = TOLERANCE[fp16] if tol is None else tol
    if not diff <= tol:  # not <=: a NaN fails too
        raise ExportCheckError(f'{what} differs from PyTorch by {diff:.3g} (max abs) > tolerance {tol:.3g}')
    return diff


def _export_traced(net, path, fp16, check, tol, what, save, load, shifted_ddc=True):
    """Write ``ExportableStudent(net)`` with ``save(module, example_input, tmp)`` to ``path``
    atomically; with ``check``, compare ``load(tmp)`` with ``net`` before the rename."""
    module = ExportableStudent(net, fp16=fp16, shifted_ddc=shifted_ddc)
    with atomic_output(path) as tmp, torch.no_grad():
        with _quiet():
            save(module, torch.rand(EXPORT_SHAPE), tmp)
            if not check:
                return None
            loaded = load(tmp)
        return _check(max_abs_diff(loaded, net), fp16, tol, what)


def export_onnx(net, path, opset=DEFAULT_OPSET, fp16=False, check=True, tol=None):
    """Export a student to ONNX with dynamic batch, height and width (input ``lq``, output ``sr``).

    Args:
        net (BlindSR_ST): The student (not changed).
        path (str): Output ``.onnx`` file, written atomically.
        opset (int): ONNX opset, 10 to 20. Default: 17.
        fp16 (bool): Half precision inside, float32 input and output. Default: False.
        check (bool): Before renaming, run the file with onnxruntime (CPU) on :data:`CHECK_SHAPES`
            and compare with the float32 PyTorch net. Default: True.
        tol (float | None): Largest max abs difference accepted; None: :data:`TOLERANCE`.

    Returns:
        float | None: The max abs difference found by the check (None without check).
    """
    if opset not in OPSETS:
        raise ValueError(f'ONNX opset {opset}: this exporter writes opsets {OPSETS[0]} to {OPSETS[-1]}.')
    axes = {'lq': {0: 'batch', 2: 'height', 3: 'width'}, 'sr': {0: 'batch', 2: 'sr_height', 3: 'sr_width'}}

    def save(module, x, tmp):
        torch.onnx.export(module, (x, ), tmp, dynamo=False, opset_version=opset, input_names=['lq'],
                          output_names=['sr'], dynamic_axes=axes)

    return _export_traced(net, path, fp16, check, tol, 'onnxruntime', save, onnx_runner)


def export_torchscript(net, path, fp16=False, check=True, tol=None):
    """Export a student as TorchScript (``torch.jit.trace``; dynamic batch, height and width) to
    ``path`` (``.pt``; read it with ``torch.jit.load``). The other arguments and the return value
    are those of :func:`export_onnx`; the check runs the re-loaded file."""

    def save(module, x, tmp):
        torch.jit.save(torch.jit.trace(module, (x, ), check_trace=False), tmp)

    return _export_traced(net, path, fp16, check, tol, 'TorchScript', save,
                          lambda tmp: torch.jit.load(tmp, map_location='cpu'))


def export_program(net, path, fp16=False, check=True, tol=None):
    """Export a student with ``torch.export`` (dynamic batch, height and width) to ``path``
    (``.pt2``; read it with ``torch.export.load(path).module()``). The other arguments and the
    return value are those of :func:`export_onnx`; the check runs the re-loaded program."""
    from torch.export import Dim

    if not path.endswith('.pt2'):
        raise ValueError(f'{path}: torch.export files must end in .pt2 (torch.export.load insists).')
    dims = {0: Dim('batch', min=1), 2: Dim('height', min=1), 3: Dim('width', min=1)}

    def save(module, x, tmp):
        torch.export.save(torch.export.export(module, (x, ), dynamic_shapes=(dims, )), tmp)

    return _export_traced(net, path, fp16, check, tol, 'torch.export', save,
                          lambda tmp: torch.export.load(tmp).module(), shifted_ddc=False)


def export_safetensors(net, path, fp16=False, check=True, tol=None):
    """Write a KDSR net's weights (student or teacher) as a flat safetensors state_dict.

    Args:
        net (BlindSR_ST | BlindSR_TA): The net (not changed).
        path (str): Output file (``.safetensors``), written atomically; read it with
            :func:`kdsr_arch.checkpoint.load_kdsr` (or spandrel, for a student).
        fp16 (bool): Store float16 weights. Default: False.
        check (bool): Before renaming, re-load the file with ``load_kdsr``: the same
            architecture, and a student's output (a teacher's weights) compared with the float32
            net on :data:`CHECK_SHAPES`. Default: True.
        tol (float | None): Largest max abs difference accepted; None: :data:`TOLERANCE`.

    Returns:
        float | None: The max abs difference found by the check (None without check).
    """
    from kdsr_arch import __version__
    from kdsr_arch.checkpoint import detect_kdsr, load_kdsr, safetensors_torch

    st = safetensors_torch(path)
    dtype = torch.float16 if fp16 else torch.float32
    state = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in net.state_dict().items()}
    spec = detect_kdsr(state, type(net).__name__)
    options = spec.options()
    metadata = {'format': 'pt', 'architecture': options.pop('type'), **{k: str(v) for k, v in options.items()},
                'dtype': str(dtype).replace('torch.', ''), 'kdsr_version': __version__}
    data = st.save(state, metadata=metadata)  # save_file would create the file mode 0600, not by the umask
    with atomic_output(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)
        if not check:
            return None
        loaded, loaded_spec = load_kdsr(tmp)
        if loaded_spec != spec:
            raise ExportCheckError(f'the file reads back as {loaded_spec.options()}, not {spec.options()}')
        if spec.is_teacher:
            loaded_state = loaded.state_dict()
            diff = max((loaded_state[k] - v.detach().cpu().float()).abs().max().item()
                       for k, v in net.state_dict().items())
        else:
            diff = max_abs_diff(loaded.eval(), net)
        return _check(diff, fp16, tol, 'safetensors re-loaded with load_kdsr')


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='kdsr-export', description=__doc__.split('\n\n')[0])
    p.add_argument('-m', '--model', required=True,
                   help='KDSR student checkpoint (BlindSR_ST; a teacher too with --format safetensors), .pth or '
                   '.safetensors')
    p.add_argument('-o', '--output', required=True, help='output file (.onnx, .pt, .pt2, .safetensors)')
    p.add_argument('--format', default='onnx', choices=FORMATS,
                   help='onnx (default), torchscript (torch.jit.trace), export (torch.export, .pt2) or safetensors '
                   '(the weights)')
    p.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                   help=f'ONNX opset, {OPSETS[0]} to {OPSETS[-1]} (default: {DEFAULT_OPSET})')
    p.add_argument('--fp16', action='store_true',
                   help='half precision inside (input and output stay float32); safetensors: float16 weights')
    p.add_argument('--check', action=argparse.BooleanOptionalAction, default=True,
                   help='compare the exported file with PyTorch before writing it (default: on; --no-check skips)')
    p.add_argument('--tol', type=float, default=None,
                   help=f'max abs difference accepted (default: {TOLERANCE[False]:g}, with --fp16 {TOLERANCE[True]:g})')
    return p.parse_args(argv)


@tool('kdsr-export')
def main(argv=None):
    args = parse_args(argv)
    from kdsr_arch.checkpoint import load_kdsr

    if os.path.exists(args.output) and os.path.isfile(args.model) and os.path.samefile(args.output, args.model):
        raise OptionError(f'-o {args.output} is the input checkpoint; choose another output.')
    try:
        net, spec = load_kdsr(args.model)
    except (ValueError, FileNotFoundError, KeyError) as err:
        raise OptionError(err.args[0] if err.args else str(err)) from None
    if spec.is_teacher and args.format != 'safetensors':
        raise OptionError(f'{args.model}: a KDSR teacher (BlindSR_TA) needs the HR image to run; export a '
                          'student checkpoint.')
    if args.format == 'onnx' and args.check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print("kdsr-export: error: the ONNX check needs onnxruntime: pip install 'kdsr[export]' (or --no-check).",
                  file=sys.stderr)
            return 2
    exporters = {'onnx': partial(export_onnx, opset=args.opset), 'torchscript': export_torchscript,
                 'export': export_program, 'safetensors': export_safetensors}
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        diff = exporters[args.format](net, args.output, fp16=args.fp16, check=args.check, tol=args.tol)
    except ExportCheckError as err:
        print(f'kdsr-export: check failed, {args.output} not written: {err}', file=sys.stderr)
        return 1
    except Exception as err:  # exporter errors can be long traces: their first line says enough
        reason = first_line(err)
        what = '' if isinstance(err, ValueError) else f'{args.format} export of {args.model} failed: '
        print(f'kdsr-export: error: {what}{reason}', file=sys.stderr)
        return 2
    on = 'in the weights' if spec.is_teacher else f'on {", ".join("x".join(map(str, s)) for s in CHECK_SHAPES)}'
    checked = 'not checked' if diff is None else f'max abs diff vs PyTorch {diff:.2e} {on}'
    if args.format == 'safetensors':
        graph = ''
        checked = checked if diff is None else f're-loaded with load_kdsr, {checked}'
    else:
        graph = ', dynamic batch/height/width'
    opset = f' opset {args.opset},' if args.format == 'onnx' else ''
    print(f'kdsr-export: wrote {args.output} ({args.format},{opset} {"fp16" if args.fp16 else "fp32"}, {spec.arch} '
          f'x{spec.scale}{graph}; {checked})')


if __name__ == '__main__':
    sys.exit(main())
