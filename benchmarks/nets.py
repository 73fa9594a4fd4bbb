"""Params / MACs / latency of the KDSR variants next to Real-ESRGAN's nets (paper Tables 1, 3, 4),
inference levers, and our nets against the straightforward reference.

    python benchmarks/nets.py [--size 180x320] [--repeats 5] [--device cpu|cuda] [--compile]

All nets run in this one process on the same input with the same threads: each is warmed up,
then the nets are timed in turn (interleaved, so load on the machine hits them alike) and the
median of N is kept. MACs are counted by ``torch.utils.flop_counter`` (FLOPs / 2; the dynamic
depthwise convolutions included) next to the paper's figures, which do not match a plain count
for S-M, T-M and GAN (REFERENCE.md section 2): both are shown, neither adjusted. Ratios are
against BasicSR's RRDBNet in the Real-ESRGAN x4 configuration.

Levers (KDSR_S-GAN and RRDBNet, same input): ``torch.no_grad`` NCHW fp32 (how Real-ESRGAN's
``RealESRGANer`` runs RRDBNet on CPU), ``torch.inference_mode``, channels_last, bf16 autocast on
CPU / fp16 weights on CUDA, and with ``--compile`` torch.compile. The reference rows compare our
KDSR_S-GAN with ``tests/reference_kdsr.py`` (per-sample functional form, same weights).
"""
import argparse
import contextlib
import math
import os
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import kdsr_arch
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.archs.srvgg_arch import SRVGGNetCompact

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
import reference_kdsr  # noqa: E402

PAPER_GMACS = {'KDSR_S-M': 191.42, 'KDSR_T-M': 192.77, 'KDSR_S-L': 623.61, 'KDSR_S-GAN': 640.84,
               'RRDBNet (Real-ESRGAN)': 871.25}
RRDB = 'RRDBNet (Real-ESRGAN)'


def rrdbnet():
    return RRDBNet(3, 3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)


def nets():
    yield RRDB, rrdbnet(), False
    yield 'SRVGGNetCompact', SRVGGNetCompact(3, 3, num_feat=64, num_conv=32, upscale=4, act_type='prelu'), False
    for name in ('KDSR_S-M', 'KDSR_T-M', 'KDSR_S-L', 'KDSR_T-L', 'KDSR_S-GAN', 'KDSR_T-GAN'):
        yield name, kdsr_arch.build_preset(name), name.startswith('KDSR_T')


def call(net, lq, teacher):
    return net(lq, torch.nn.functional.interpolate(lq, scale_factor=4)) if teacher else net(lq)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def interleaved(fns, repeats, device):
    """{name: median seconds}: one warm-up call each, then ``repeats`` rounds over all fns in turn."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def psnr(a, b):
    mse = (a.float() - b.float()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def describe(device):
    from kdsr_model.cpu_precision import cpu_model
    cpu = cpu_model()
    gpu = f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else ''
    return f'{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {device}{gpu}'


def net_table(h, w, repeats, device):
    """Markdown table of every net: params, counted and paper MACs, latency, ratios to RRDBNet."""
    torch.manual_seed(0)
    lq = torch.rand(1, 3, h, w, device=device)
    entries = [(name, net.eval().to(device), teacher) for name, net, teacher in nets()]
    rows = ['| net | params | GMACs at %dx%d (counted) | GMACs at 180x320 (counted, scaled by pixels) | '
            'GMACs at 180x320 (paper) | latency ms | time / RRDBNet | MACs / RRDBNet |' % (h, w),
            '|---|---|---|---|---|---|---|---|']
    with torch.inference_mode():
        gmacs = {}
        for name, net, teacher in entries:
            with FlopCounterMode(display=False) as counter:
                call(net, lq, teacher)
            gmacs[name] = counter.get_total_flops() / 2e9
        med = interleaved({name: (lambda n=net, t=teacher: call(n, lq, t)) for name, net, teacher in entries},
                          repeats, device)
    for name, net, _ in entries:
        params = sum(p.numel() for p in net.parameters())
        rows.append(f'| {name} | {params:,} | {gmacs[name]:.2f} | {gmacs[name] * 180 * 320 / (h * w):.2f} | '
                    f'{PAPER_GMACS.get(name, "-")} | {1000 * med[name]:.1f} | {med[name] / med[RRDB]:.2f} | '
                    f'{gmacs[name] / gmacs[RRDB]:.2f} |')
    return '\n'.join(rows), dict(latency=med, gmacs=gmacs)


def _variants(device, use_compile):
    """name -> (prepare(net) -> net, context factory, input memory format)."""
    cpu = device.type == 'cpu'
    cl = torch.channels_last
    low = 'bf16 autocast' if cpu else 'fp16'
    v = {
        'no_grad, NCHW, fp32': (lambda n: n, torch.no_grad, torch.contiguous_format, None),
        'inference_mode, NCHW, fp32': (lambda n: n, torch.inference_mode, torch.contiguous_format, None),
        'inference_mode, channels_last, fp32': (lambda n: n.to(memory_format=cl), torch.inference_mode, cl, None),
        f'inference_mode, channels_last, {low}': (
            (lambda n: n.to(memory_format=cl)) if cpu else (lambda n: n.to(memory_format=cl).half()),
            (lambda: _stack(torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16))) if cpu
            else torch.inference_mode, cl, None if cpu else torch.float16),
    }
    if use_compile:
        v['torch.compile, channels_last, fp32'] = (lambda n: torch.compile(n.to(memory_format=cl)),
                                                   torch.inference_mode, cl, None)
    return v


@contextlib.contextmanager
def _stack(*cms):
    with contextlib.ExitStack() as stack:
        for cm in cms:
            stack.enter_context(cm)
        yield


def lever_table(h, w, repeats, device, use_compile=False):
    """KDSR_S-GAN and RRDBNet under each lever, interleaved; ratios per row and to RRDBNet as users run it."""
    torch.manual_seed(0)
    lq = torch.rand(1, 3, h, w, device=device)
    base = {'KDSR_S-GAN': kdsr_arch.build_preset('KDSR_S-GAN').eval(), RRDB: rrdbnet().eval()}
    states = {k: {n: t.clone() for n, t in v.state_dict().items()} for k, v in base.items()}
    fns, outs, comp_s = {}, {}, {}
    for vname, (prep, ctx, fmt, dtype) in _variants(device, use_compile).items():
        for key, make in (('KDSR_S-GAN', lambda: kdsr_arch.build_preset('KDSR_S-GAN')), (RRDB, rrdbnet)):
            net = make().eval()
            net.load_state_dict(states[key])
            net = prep(net.to(device))
            x = lq.contiguous(memory_format=fmt).to(dtype or lq.dtype)
            fn = (lambda n=net, x=x, c=ctx: _run(n, x, c))
            t0 = time.perf_counter()
            outs[(vname, key)] = fn().float()
            comp_s[(vname, key)] = time.perf_counter() - t0
            fns[(vname, key)] = fn
    med = interleaved(fns, repeats, device)
    vnames = list(_variants(device, use_compile))
    user = med[(vnames[0], RRDB)]
    rows = ['| lever | KDSR_S-GAN ms | RRDBNet ms | KDSR / RRDBNet (same lever) | KDSR / RRDBNet as users run it '
            '(no_grad, NCHW, fp32) | KDSR vs its fp32 output: max abs diff, PSNR | RRDBNet vs its fp32 output |',
            '|---|---|---|---|---|---|---|']
    data = {}
    for v in vnames:
        k, r = med[(v, 'KDSR_S-GAN')], med[(v, RRDB)]
        dk = (outs[(v, 'KDSR_S-GAN')] - outs[(vnames[0], 'KDSR_S-GAN')]).abs().max().item()
        dr = (outs[(v, RRDB)] - outs[(vnames[0], RRDB)]).abs().max().item()
        pk, pr = psnr(outs[(v, 'KDSR_S-GAN')], outs[(vnames[0], 'KDSR_S-GAN')]), \
            psnr(outs[(v, RRDB)], outs[(vnames[0], RRDB)])
        data[v] = dict(kdsr=k, rrdb=r, same=k / r, user=k / user, diff=dk)
        extra = f' (first call incl. compile {comp_s[(v, "KDSR_S-GAN")]:.0f} s)' if 'compile' in v else ''
        rows.append(f'| {v}{extra} | {1000 * k:.1f} | {1000 * r:.1f} | {k / r:.2f} | {k / user:.2f} | '
                    f'{dk:.1e}, {pk:.1f} dB | {dr:.1e}, {pr:.1f} dB |')
    return '\n'.join(rows), data


def _run(net, x, ctx):
    with ctx():
        return net(x)


def reference_table(h, w, repeats, device, batch=1):
    """Our KDSR_S-GAN (fp32 NCHW; fp32 channels_last; bf16/fp16) vs the per-sample reference, interleaved."""
    torch.manual_seed(0)
    lq = torch.rand(batch, 3, h, w, device=device)
    net = kdsr_arch.build_preset('KDSR_S-GAN').eval().to(device)
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    cl = kdsr_arch.build_preset('KDSR_S-GAN').eval().to(device)
    cl.load_state_dict(sd)
    cl = cl.to(memory_format=torch.channels_last)
    lq_cl = lq.contiguous(memory_format=torch.channels_last)
    cpu = device.type == 'cpu'
    if cpu:
        low_net, low_x = cl, lq_cl
        low = lambda: _run(low_net, low_x, lambda: torch.autocast('cpu', dtype=torch.bfloat16))  # noqa: E731
    else:
        low_net = kdsr_arch.build_preset('KDSR_S-GAN').eval().to(device)
        low_net.load_state_dict(sd)
        low_net = low_net.to(memory_format=torch.channels_last).half()
        low_x = lq_cl.half()
        low = lambda: low_net(low_x)  # noqa: E731
    fns = {'reference (per-sample functional, NCHW fp32)': lambda: reference_kdsr.student_forward(lq, sd, 4)[0],
           'ours, NCHW input (the net picks channels_last on CPU)': lambda: net(lq),
           'ours, channels_last fp32': lambda: cl(lq_cl),
           f'ours, channels_last {"bf16 autocast" if cpu else "fp16"}': low}
    with torch.inference_mode():
        outs = {k: f().float() for k, f in fns.items()}
        med = interleaved(fns, repeats, device)
    ref_name = next(iter(fns))
    rows = [f'| KDSR_S-GAN, batch {batch}, LR {h}x{w} | ms | reference / this (speed-up) | max abs diff vs reference '
            '| PSNR vs reference |', '|---|---|---|---|---|']
    data = {}
    for k in fns:
        d = (outs[k] - outs[ref_name]).abs().max().item()
        data[k] = dict(ms=1000 * med[k], speedup=med[ref_name] / med[k], diff=d)
        rows.append(f'| {k} | {1000 * med[k]:.1f} | {med[ref_name] / med[k]:.2f}x | {d:.1e} | '
                    f'{psnr(outs[k], outs[ref_name]):.1f} dB |')
    return '\n'.join(rows), data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--size', default='180x320', help='LR height x width')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--compile', action='store_true', help='add a torch.compile row to the lever table')
    parser.add_argument('--skip-nets', action='store_true', help='only the lever and reference tables')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = map(int, args.size.split('x'))
    device = torch.device(args.device)
    print(f'# {describe(device)}, LR {h}x{w} -> x4, median of {args.repeats}\n')
    if not args.skip_nets:
        print(net_table(h, w, args.repeats, device)[0] + '\n')
    print(lever_table(h, w, args.repeats, device, args.compile)[0] + '\n')
    print(reference_table(h, w, args.repeats, device)[0])


if __name__ == '__main__':
    main()
