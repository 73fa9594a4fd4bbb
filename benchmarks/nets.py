"""Params / MACs / latency of the KDSR variants next to Real-ESRGAN's nets (paper Tables 1, 3, 4).

    python benchmarks/nets.py [--size 180x320] [--repeats 5] [--device cpu|cuda]

All nets run in this one process on the same input with the same threads: warm-up, then the
median of N. MACs are counted by ``torch.utils.flop_counter`` (FLOPs / 2; the dynamic
depthwise convolutions included) next to the paper's figures, which do not match a plain count
for S-M, T-M and GAN (REFERENCE.md section 2): both are shown, neither adjusted. Ratios are
against BasicSR's RRDBNet in the Real-ESRGAN x4 configuration. The last rows compare our batched
KDSR with a straightforward per-sample reference of the authors' computation (same weights).
"""
import argparse
import os
import platform
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


def nets():
    yield 'RRDBNet (Real-ESRGAN)', RRDBNet(3, 3, scale=4, num_feat=64, num_block=23, num_grow_ch=32), False
    yield 'SRVGGNetCompact', SRVGGNetCompact(3, 3, num_feat=64, num_conv=32, upscale=4, act_type='prelu'), False
    for name in ('KDSR_S-M', 'KDSR_T-M', 'KDSR_S-L', 'KDSR_T-L', 'KDSR_S-GAN', 'KDSR_T-GAN'):
        yield name, kdsr_arch.build_preset(name), name.startswith('KDSR_T')


def call(net, lq, teacher):
    return net(lq, torch.nn.functional.interpolate(lq, scale_factor=4)) if teacher else net(lq)


def timed(fn, repeats, device):
    fn()
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--size', default='180x320', help='LR height x width')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    h, w = map(int, args.size.split('x'))
    device = torch.device(args.device)
    torch.manual_seed(0)
    lq = torch.rand(1, 3, h, w, device=device)
    print(f'# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, '
          f'device {device}{" (" + torch.cuda.get_device_name(device) + ")" if device.type == "cuda" else ""}, '
          f'LR {h}x{w} -> x4, median of {args.repeats}\n')
    print(f'| net | params | GMACs at {h}x{w} (counted) | GMACs at 180x320 (counted, scaled by pixels) | '
          'GMACs at 180x320 (paper) | latency ms | time / RRDBNet | MACs / RRDBNet |')
    print('|---|---|---|---|---|---|---|---|')
    base = None
    with torch.inference_mode():
        for name, net, teacher in nets():
            net = net.eval().to(device)
            with FlopCounterMode(display=False) as counter:
                call(net, lq, teacher)
            gmacs = counter.get_total_flops() / 2e9
            ms = 1000 * timed(lambda: call(net, lq, teacher), args.repeats, device)
            base = base or (ms, gmacs)
            params = sum(p.numel() for p in net.parameters())
            print(f'| {name} | {params:,} | {gmacs:.2f} | {gmacs * 180 * 320 / (h * w):.2f} | '
                  f'{PAPER_GMACS.get(name, "-")} | {ms:.1f} | '
                  f'{ms / base[0]:.2f} | {gmacs / base[1]:.2f} |')
            del net

        net = kdsr_arch.build_preset('KDSR_S-GAN').eval().to(device)
        sd = net.state_dict()
        ours = timed(lambda: net(lq), args.repeats, device)
        ref = timed(lambda: reference_kdsr.student_forward(lq, sd, 4), args.repeats, device)
        diff = (net(lq) - reference_kdsr.student_forward(lq, sd, 4)[0]).abs().max().item()
    print(f'\nKDSR_S-GAN, ours vs the per-sample functional reference: {1000 * ours:.1f} ms vs {1000 * ref:.1f} ms '
          f'({ref / ours:.2f}x), max |difference| {diff:.2e}')


if __name__ == '__main__':
    main()
