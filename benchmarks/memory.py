"""Peak inference memory of a KDSR-GAN-size upscale, tiled and whole-image, each in a fresh process.

    python benchmarks/memory.py [--size 1080x1920] [--device cpu|cuda] [--bf16] [--threads N]

A KDSR_S-GAN student with random weights (memory and time do not depend on the weights) is
saved to a temporary file; for each mode a fresh Python process loads it with
``KDSRUpscaler`` and upscales one random ``--size`` (H x W) 8-bit image x4 with ``enhance``
(IDR, generator, conversion to uint8: what ``kdsr-upscale`` does before writing). The child
reports its peak resident set (``VmHWM`` of /proc/self/status; CPU) or
``torch.cuda.max_memory_allocated`` (CUDA), and the wall time of the upscale.

Modes: ``baseline`` (model loaded, nothing upscaled), ``tiled`` (the upscaler's automatic
tiles), ``whole`` (tile = the whole image; the generator's upsampler still runs on its
sub-tiles, see kdsr_model/upscaler.py). A mode whose estimate (``KDSRUpscaler.activation_bytes``
plus the output arrays) exceeds ``--max-fraction`` of MemAvailable (CPU) or of the free device
memory is not run: the estimate is printed instead, so this script never pushes the machine
into swap or the OOM killer.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _vm_hwm_bytes():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args):
    import numpy as np
    import torch

    from kdsr_model.upscaler import KDSRUpscaler
    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = map(int, args.size.split('x'))
    device = torch.device(args.device)
    up = KDSRUpscaler(args.model, device=device, bf16=args.bf16)
    result = dict(mode=args.mode, size=args.size, device=str(device), threads=torch.get_num_threads())
    if args.mode != 'baseline':
        img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        up.tile = max(h, w) if args.mode == 'whole' else 0
        result['tile'] = up.tile or up.auto_tile(h, w)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        out, _ = up.enhance(img)
        result['seconds'] = time.perf_counter() - t0
        result['output'] = 'x'.join(map(str, out.shape))
        result['tile_retry'] = up.last_tile_retry
    if device.type == 'cuda':
        result['cuda_peak_allocated'] = torch.cuda.max_memory_allocated(device)
    result['peak_rss'] = _vm_hwm_bytes()
    print('RESULT ' + json.dumps(result))


def estimate_bytes(model, size, device, mode, bf16=False):
    """(estimated peak bytes of the mode, available bytes) without running it."""
    import torch

    from kdsr_model.upscaler import KDSRUpscaler, available_memory
    h, w = map(int, size.split('x'))
    up = KDSRUpscaler(model, device=device)
    if mode == 'whole':
        act = up.activation_bytes(h, w)
    else:
        tile = up.auto_tile(h, w)
        act = up.activation_bytes(min(h, tile + 2 * up.tile_pad), min(w, tile + 2 * up.tile_pad)) if tile else \
            up.activation_bytes(h, w)
    s = up.scale
    # float output (3 x sH x sW) + uint8 copies + the model and torch themselves (~0.5 GB)
    out = 3 * s * s * h * w * (4 + 2) if torch.device(device).type == 'cpu' else 3 * s * s * h * w * 4
    return act + out + (2**29 if torch.device(device).type == 'cpu' else 0), available_memory(torch.device(device))


def run(size='1080x1920', device='cpu', modes=('baseline', 'tiled', 'whole'), threads=None, bf16=False,
        max_fraction=0.5, preset='KDSR_S-GAN', log=print, checkpoint=None):
    """Measure each mode in a fresh process; returns a list of result dicts (``skipped`` set with
    the estimate when a mode was not run). ``checkpoint``: measure that student file instead of
    a random-weight ``preset``."""
    import torch

    from kdsr_arch import build_preset
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model = checkpoint or os.path.join(tmp, f'{preset}.pth')
        if checkpoint is None:
            torch.manual_seed(0)
            torch.save({'params': build_preset(preset).state_dict()}, model)
        for mode in modes:
            est, avail = estimate_bytes(model, size, device, mode, bf16) if mode != 'baseline' else (0, 1)
            if est > max_fraction * avail:
                r = dict(mode=mode, size=size, device=device, skipped=True, estimate=est, available=avail)
                log(f'{mode}: not run, estimated {est / 2**30:.1f} GiB > {max_fraction:.0%} of the '
                    f'{avail / 2**30:.1f} GiB available')
                results.append(r)
                continue
            cmd = [sys.executable, os.path.abspath(__file__), '--child', '--mode', mode, '--model', model,
                   '--size', size, '--device', device] + (['--threads', str(threads)] if threads else []) + \
                (['--bf16'] if bf16 else [])
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
            if proc.returncode != 0 or not lines:
                err = (proc.stderr.strip().splitlines() or ['?'])[-1]
                r = dict(mode=mode, size=size, device=device, failed=f'exit {proc.returncode}: {err}')
            else:
                r = json.loads(lines[-1][len('RESULT '):])
                r['estimate'] = est
            r['wall'] = time.perf_counter() - t0
            log(f'{mode}: {json.dumps(r)}')
            results.append(r)
    return results


def markdown(results, bf16=False):
    lines = ['| mode | LR input | tile | output | peak RSS | CUDA peak allocated | estimate | upscale s |',
             '|---|---|---|---|---|---|---|---|']
    gib = lambda b: f'{b / 2**30:.2f} GiB' if b else '-'  # noqa: E731
    for r in results:
        if r.get('skipped'):
            lines.append(f'| {r["mode"]} | {r["size"]} | whole image | - | not run (estimate over half of the '
                         f'{gib(r["available"])} available) | - | {gib(r["estimate"])} | - |')
        elif r.get('failed'):
            lines.append(f'| {r["mode"]} | {r["size"]} | | failed: {r["failed"]} | | | | |')
        else:
            lines.append(f'| {r["mode"]}{" (bf16)" if bf16 and r["mode"] != "baseline" else ""} | '
                         f'{r["size"] if r["mode"] != "baseline" else "-"} | {r.get("tile", "-")} | '
                         f'{r.get("output", "-")} | {gib(r["peak_rss"])} | {gib(r.get("cuda_peak_allocated"))} | '
                         f'{gib(r.get("estimate"))} | {r["seconds"]:.1f} |' if 'seconds' in r else
                         f'| {r["mode"]} | - | - | - | {gib(r["peak_rss"])} | {gib(r.get("cuda_peak_allocated"))} '
                         f'| - | - |')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--size', default='1080x1920', help='input (LR) height x width; output is x4')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--modes', default='baseline,tiled,whole')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--bf16', action='store_true', help='KDSRUpscaler(bf16=True) (CPU)')
    parser.add_argument('--max-fraction', type=float, default=0.5,
                        help='skip a mode whose estimate exceeds this fraction of the available memory')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--mode', help=argparse.SUPPRESS)
    parser.add_argument('--model', help=argparse.SUPPRESS)
    parser.add_argument('--checkpoint', default=None, help='a student file to measure (default: KDSR_S-GAN size, '
                        'random weights)')
    args = parser.parse_args()
    if args.child:
        return child(args)
    results = run(args.size, args.device, args.modes.split(','), args.threads, args.bf16, args.max_fraction,
                  log=lambda m: print(m, file=sys.stderr), checkpoint=args.checkpoint)
    print(markdown(results, args.bf16))


if __name__ == '__main__':
    main()
