"""Run every benchmark and write one Markdown report (docs/BENCHMARKS.md).

    python benchmarks/report.py [--quick] [--out docs/BENCHMARKS.md] [--threads N] [--compile]
                                [--skip-training] [--skip-memory]

Sections: the machine; params / counted and paper MACs / latency of every net (``nets.py``);
inference levers on KDSR_S-GAN and RRDBNet; our nets against the per-sample reference; peak
inference memory of a KDSR-GAN-size upscale, tiled and whole-image (``memory.py``); seconds
per iteration of the three tiny training stages (``tiny_stages.py``); the issue's goals, each
met or not with the measured ratio.

``--quick``: nets at LR 64x64 only, 3 repeats, memory at a 270x480 input (1080x1920 output).
Default (full): nets at 64x64 and 180x320 (the paper's size), 5 repeats, memory at 1080x1920
(x4: 7680x4320; tens of minutes on a small CPU).
"""
import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import memory  # noqa: E402
import nets  # noqa: E402
from kdsr_model.cpu_precision import cached_choice, native_bf16  # noqa: E402
from kdsr_model.upscaler import DEFAULT_MODEL, KDSRUpscaler  # noqa: E402

GOAL_VS_RRDB = 0.60
GOAL_VS_REF = 1.3
GOAL_RSS = 3e9  # bytes (3 GB, the stricter reading)


def machine(device):
    info = {}
    try:
        with open('/proc/cpuinfo') as f:
            text = f.read()
        info['cpu'] = re.search(r'^model name\s*:\s*(.*)$', text, re.M).group(1)
        flags = set(re.search(r'^flags\s*:\s*(.*)$', text, re.M).group(1).split())
        info['flags'] = ', '.join(f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile', 'avx512_vnni')
                                  if f in flags) or 'none of avx2/avx512/amx'
    except (OSError, AttributeError):
        info['cpu'], info['flags'] = platform.processor() or platform.machine(), '?'
    try:
        with open('/proc/meminfo') as f:
            info['mem'] = f'{int(f.readline().split()[1]) / 2**20:.1f} GiB'
    except OSError:
        info['mem'] = '?'
    try:
        load = os.getloadavg()
        info['load'] = f'{load[0]:.2f} (1 min) at start'
    except OSError:
        info['load'] = '?'
    rows = [('CPU', info['cpu']), ('logical CPUs (usable by this process)',
                                    f'{os.cpu_count()} ({len(os.sched_getaffinity(0))})'),
            ('relevant CPU flags', info['flags']), ('memory', info['mem']), ('load average', info['load']),
            ('torch', f'{torch.__version__} (oneDNN {torch.backends.mkldnn.is_available()}, '
                      f'CPU capability {torch.backends.cpu.get_cpu_capability()})'),
            ('torch threads', str(torch.get_num_threads())),
            ('kdsr-upscale default precision here (built-in model)', default_precision()),
            ('device', str(device) + (f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else '')),
            ('CUDA device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'),
            ('Python / OS', f'{platform.python_version()} / {platform.platform()}')]
    return '| | |\n|---|---|\n' + '\n'.join(f'| {k} | {v} |' for k, v in rows)


def default_precision():
    """What ``kdsr-upscale`` picks on this CPU for the built-in model, and the timing behind it."""
    up = KDSRUpscaler(device='cpu')
    if not native_bf16():
        return 'fp32 (no native bf16)'
    entry = cached_choice(up.spec)
    timing = f" (measured: fp32 {entry['fp32_s'] * 1000:.0f} ms, bf16 {entry['bf16_s'] * 1000:.0f} ms)" if entry else ''
    return ('bf16 autocast' if up.bf16 else 'fp32') + timing


def training(log):
    """The tiny stages' table from tiny_stages.py, with iterations per second added."""
    proc = subprocess.run([sys.executable, os.path.join(HERE, 'tiny_stages.py')], capture_output=True, text=True)
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith('|')]
    if proc.returncode != 0 or len(rows) < 2:
        return f'tiny_stages.py failed: {(proc.stderr.strip().splitlines() or ["?"])[-1]}'
    out = [rows[0].rstrip('|') + '| it/s |', rows[1].rstrip('|') + '|---|']
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip('|').split('|')]
        try:
            its = f'{1 / float(cells[2]):.2f}'
        except (ValueError, ZeroDivisionError, IndexError):
            its = '-'
        out.append(row.rstrip('|') + f'| {its} |')
    log('training done')
    return '\n'.join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--out', default=os.path.join('docs', 'BENCHMARKS.md'))
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--repeats', type=int, default=None)
    parser.add_argument('--compile', action='store_true', help='add torch.compile to the lever table')
    parser.add_argument('--memory-size', default=None, help='input H x W for the memory runs')
    parser.add_argument('--skip-training', action='store_true')
    parser.add_argument('--skip-memory', action='store_true')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = [(64, 64)] if args.quick else [(64, 64), (180, 320)]
    mem_size = args.memory_size or ('270x480' if args.quick else '1080x1920')
    t_start = time.time()

    def log(msg):
        print(f'[{time.time() - t_start:6.0f} s] {msg}', file=sys.stderr, flush=True)

    command = 'python benchmarks/report.py ' + ' '.join(shlex.quote(a) for a in sys.argv[1:])
    md = ['# Benchmarks', '',
          f'Generated by `{command.strip()}` on {time.strftime("%Y-%m-%d %H:%M")} '
          '(regenerate on an idle machine: timings below are medians of interleaved runs, ratios are '
          'the robust part).', '', '## Machine', '', machine(device), '']

    lever_data, ref_data = {}, {}
    for h, w in sizes:
        log(f'nets at {h}x{w}')
        table, _ = nets.net_table(h, w, repeats, device)
        md += [f'## Nets at LR {h}x{w} -> x4 (median of {repeats}, interleaved)', '',
               'MACs counted by `torch.utils.flop_counter` (dynamic depthwise convolutions included), next to '
               "the paper's figures (which match a plain count only for S-L; REFERENCE.md section 2). Teachers "
               'also get the HR image. Latency of the whole forward (encoder + generator), `inference_mode`, '
               'NCHW fp32, as built.', '', table, '']
        log(f'levers at {h}x{w}')
        table, lever_data[(h, w)] = nets.lever_table(h, w, repeats, device, args.compile)
        md += [f'### Levers at LR {h}x{w}: KDSR_S-GAN and RRDBNet under the same settings', '',
               'Each lever row runs both nets with the same setting; "as users run it" is RRDBNet the way '
               "Real-ESRGAN's `RealESRGANer` runs it on CPU (`no_grad`, NCHW, fp32). Differences are "
               "against the same net's first row.", '', table, '']
        log(f'reference at {h}x{w}')
        table, ref_data[(h, w)] = nets.reference_table(h, w, repeats, device)
        md += [f'### Our KDSR_S-GAN against the per-sample reference (LR {h}x{w})', '',
               '`tests/reference_kdsr.py` computes the authors\' forward from the same state_dict, one sample '
               'at a time, module-free, NCHW fp32.', '', table, '']

    mem = {}
    if not args.skip_memory:
        log(f'memory at {mem_size}')
        mem['KDSR_S-GAN size (random weights)'] = memory.run(mem_size, args.device, threads=args.threads, log=log)
        mem['built-in default model'] = memory.run(mem_size, args.device, modes=('baseline', 'tiled'),
                                                   threads=args.threads, log=log, checkpoint=DEFAULT_MODEL)
        md += [f'## Inference memory: {mem_size} input, x4, {args.device}, fp32', '',
               'Each row is a fresh process (`benchmarks/memory.py`): `KDSRUpscaler.enhance` on a random 8-bit '
               'image, peak RSS from `VmHWM` (CPU) or `torch.cuda.max_memory_allocated` (CUDA). "baseline": '
               'the process with the model loaded only. "tiled": automatic tiles (each tile runs the body '
               'whole and the upsampler on 128-px sub-tiles; the IDR encoder runs on its own tiles when it '
               'would not fit). "whole": one tile for the whole image (the upsampler still on sub-tiles); not '
               'run when the estimate exceeds half the available memory.', '']
        for name, results in mem.items():
            md += [f'### {name}', '', memory.markdown(results), '']

    if not args.skip_training:
        log('tiny training stages')
        md += ['## Training: tiny stages on CPU', '',
               '`benchmarks/tiny_stages.py`: `kdsr-train` on `options/tiny/*` (BasicSR\'s own iteration times, '
               'first print interval excluded).', '', training(log), '']

    md += ['## Goals', '', goals(lever_data, ref_data, mem, mem_size, device), '']
    md += [f'Total time of this run: {time.time() - t_start:.0f} s.', '']
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write('\n'.join(md))
    log(f'wrote {args.out}')


def goals(lever_data, ref_data, mem, mem_size, device):
    met = lambda ok: '**met**' if ok else '**not met**'  # noqa: E731
    lines = ['| goal | measured | verdict |', '|---|---|---|']
    for (h, w), data in lever_data.items():
        names = list(data)
        fp32 = data[names[2]]  # inference_mode, channels_last, fp32: equal outputs
        low = data[names[3]]
        lines.append(f'| KDSR-GAN x4 <= {GOAL_VS_RRDB:.2f}x RRDBNet time on {device.type} (LR {h}x{w}), fp32, '
                     f'equal outputs | {fp32["user"]:.2f}x RRDBNet as users run it; {fp32["same"]:.2f}x with the '
                     f'same levers | {met(fp32["user"] <= GOAL_VS_RRDB)} as users run RRDBNet, '
                     f'{met(fp32["same"] <= GOAL_VS_RRDB)} with the same levers |')
        lines.append(f'| the same with {names[3].split(", ")[-1]} (outputs differ from fp32 by max {low["diff"]:.1e}) '
                     f'| {low["user"]:.2f}x RRDBNet as users run it; {low["same"]:.2f}x with the same levers | '
                     f'{met(low["user"] <= GOAL_VS_RRDB)} as users run RRDBNet, {met(low["same"] <= GOAL_VS_RRDB)} '
                     'with the same levers |')
    for (h, w), data in ref_data.items():
        names = list(data)
        best = max(names[1:3], key=lambda n: data[n]['speedup'])
        low = data[names[3]]
        lines.append(f'| >= {GOAL_VS_REF}x faster than the per-sample reference (LR {h}x{w}, batch 1), equal outputs '
                     f'| {best}: {data[best]["speedup"]:.2f}x, max diff {data[best]["diff"]:.1e} | '
                     f'{met(data[best]["speedup"] >= GOAL_VS_REF)} |')
        lines.append(f'| the same, {names[3]} (not equal: max diff {low["diff"]:.1e}) | {low["speedup"]:.2f}x | '
                     f'{met(low["speedup"] >= GOAL_VS_REF)} |')
    for name, results in mem.items():
        tiled = next((r for r in results if r['mode'] == 'tiled'), None)
        if tiled and 'peak_rss' in tiled and device.type == 'cpu':
            full = mem_size == '1080x1920'
            rss = tiled['peak_rss']
            lines.append(f'| 1920x1080 -> x4 on CPU within 3 GB peak RSS, {name} | {rss / 1e9:.2f} GB '
                         f'({rss / 2**30:.2f} GiB) at a {mem_size} input (tile {tiled.get("tile")}) | '
                         f'{met(rss <= GOAL_RSS) if full else "not measured at 1080p in this run"} |')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
