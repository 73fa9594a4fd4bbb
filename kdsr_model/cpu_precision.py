"""The CPU precision of ``kdsr-upscale`` by measurement: bf16 autocast only where it is faster.

Whether bfloat16 autocast pays on a CPU cannot be read from its flags: on an AMD EPYC with
AVX512-BF16 it ran 1.7-2x faster than fp32, on an Intel Xeon with AVX512-BF16 but no AMX it
ran 1.3-1.5x *slower*. So where the CPU has native bf16 at all (:func:`native_bf16`), the first
upscaler built for a model size times both precisions on a small input (interleaved, after a
warm-up) and keeps bf16 only when it is clearly faster (:data:`MARGIN`); elsewhere fp32 is used
without a measurement. The verdict is cached per CPU, torch version, thread count and model
size in ``cpu_precision.json`` under ``$KDSR_CACHE_DIR`` (default ``$XDG_CACHE_HOME/kdsr``,
else ``~/.cache/kdsr``), so later runs start at once; delete the file to measure again.
``--fp32`` / ``--bf16`` (``bf16=False`` / ``True``) skip all of this.
"""
import json
import os
import platform
import statistics
import time

import torch

CACHE_NAME = 'cpu_precision.json'
MARGIN = 0.9  # bf16 must take under 90% of fp32's time: never slower than fp32, noise included
SIDE = 96  # LR side of the timing input
REPEATS = 3


def native_bf16():
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX). Necessary for bf16
    autocast to be worth it, not sufficient: see :func:`choose_bf16`."""
    check = [getattr(torch.cpu, name, None) for name in ('_is_avx512_bf16_supported', '_is_amx_tile_supported')]
    return any(f() for f in check if f is not None)


def proc_field(path, key):
    """The value after ``key`` on its line of a ``/proc`` file (e.g. ``/proc/meminfo``), or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line[len(key):].lstrip(' \t:').strip()
    except OSError:
        pass
    return None


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    return (proc_field('/proc/cpuinfo', 'model name') or platform.processor() or platform.machine()
            or 'unknown CPU')


def cache_file():
    root = os.environ.get('KDSR_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'), 'kdsr')
    return os.path.join(root, CACHE_NAME)


def cache_key(spec):
    """One entry per CPU (model name and bf16/AMX support: virtual machines often show a generic
    name), torch version, thread count and model size."""
    amx = getattr(torch.cpu, '_is_amx_tile_supported', lambda: False)()
    return (f'{cpu_model()} | amx={int(bool(amx))} | torch {torch.__version__} | {torch.get_num_threads()} threads | '
            f'n_feats={spec.n_feats} n_encoder_res={spec.n_encoder_res} n_sr_blocks={spec.n_sr_blocks} '
            f'x{spec.scale}')


def _read_cache(path):
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # none yet, unreadable or corrupt: measured again and rewritten


def cached_choice(spec):
    """The cached entry for ``spec`` on this machine (a dict with ``bf16``, ``fp32_s`` and
    ``bf16_s``), or None."""
    entry = _read_cache(cache_file()).get(cache_key(spec))
    return entry if isinstance(entry, dict) and isinstance(entry.get('bf16'), bool) else None


def _write_cache(spec, entry):
    """Add ``entry`` to the cache file (atomically); a cache that cannot be written is not an
    error: the next run measures again."""
    from .io import write_atomic
    path = cache_file()
    data = _read_cache(path)
    data[cache_key(spec)] = entry
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, lambda f: json.dump(data, f, indent=1, sort_keys=True), mode='w')
    except OSError:
        return None
    return path


def time_both(run, repeats=REPEATS):
    """Median seconds of ``run(False)`` (fp32) and ``run(True)`` (bf16), interleaved so that a
    busy moment hits both, after one warm-up of each."""
    times = {False: [], True: []}
    for i in range(repeats + 1):
        for flag in (False, True):
            t0 = time.perf_counter()
            run(flag)
            if i:
                times[flag].append(time.perf_counter() - t0)
    return statistics.median(times[False]), statistics.median(times[True])


def choose_bf16(spec, run):
    """``(bf16, note)``: whether bf16 autocast is the faster default for this model size here.

    ``run(bf16)`` upscales a fixed ``SIDE`` x ``SIDE`` input once in the given precision. Without
    native bf16 the answer is fp32, unmeasured; with it, the cached verdict or a new measurement
    (about 8 runs of ``run``). ``note`` is one line describing a new measurement, else None.
    """
    if not native_bf16():
        return False, None
    entry = cached_choice(spec)
    if entry is not None:
        return entry['bf16'], None
    fp32_s, bf16_s = time_both(run)
    bf16 = bf16_s < MARGIN * fp32_s
    where = _write_cache(spec, dict(bf16=bf16, fp32_s=round(fp32_s, 5), bf16_s=round(bf16_s, 5), side=SIDE))
    note = (f'CPU precision measured for this model size: fp32 {fp32_s * 1000:.0f} ms, bf16 {bf16_s * 1000:.0f} ms '
            f'per {SIDE}x{SIDE} input -> {"bf16" if bf16 else "fp32"}'
            f'{f" (cached in {where})" if where else " (cache not writable: measured again next time)"}')
    return bf16, note
