"""What a BasicSR training log says: the validations and the speed of a run.

    python scripts/training_log.py speed LOG N   ->  "<s/iteration> <s/validation>"

``speed`` reads s/iteration between iterations N/3 and N (so start-up and warm-up are left
out) and the time one validation of all the run's sets takes; scripts/train_default_gpu.sh sizes
its runs with it. :func:`read_validations` serves scripts/select_checkpoint.py.
"""
import datetime
import re
import sys

ITER = re.compile(r'iter:\s*([\d,]+),')
VAL = re.compile(r'Validation (\S+)')
PSNR = re.compile(r'# psnr: ([\d.]+)')
STAMP = re.compile(r'(\S+ \S+) INFO: ')


def _stamp(line):
    m = STAMP.match(line)
    return datetime.datetime.strptime(m.group(1), '%Y-%m-%d %H:%M:%S,%f') if m else None


def read_validations(log):
    """{iteration: {validation set: PSNR}} from a BasicSR training log (the last logged
    iteration before a validation block is its iteration, so print_freq must divide val_freq;
    the final one is the run's last)."""
    rows, it, current = {}, 0, None
    with open(log, encoding='utf-8') as f:
        for line in f:
            if (m := ITER.search(line)):
                it = int(m.group(1).replace(',', ''))
            elif (m := VAL.search(line)):
                current = m.group(1)
            elif current and (m := PSNR.search(line)):
                rows.setdefault(it, {})[current] = float(m.group(1))
                current = None
    return rows


def read_speed(log, n):
    """(s/iteration between iterations n // 3 and n, s for one validation of all sets)."""
    stamps, vals = {}, []
    with open(log, encoding='utf-8') as f:
        for line in f:
            if (m := ITER.search(line)) and (t := _stamp(line)):
                stamps[int(m.group(1).replace(',', ''))] = t
            elif VAL.search(line) and (t := _stamp(line)):
                vals.append(t)
    if n // 3 not in stamps or n not in stamps:
        sys.exit(f'{log}: the run did not reach iteration {n} (see the log)')
    val_s = (vals[-1] - vals[0]).total_seconds() * len(vals) / max(1, len(vals) - 1) if vals else 0
    return (stamps[n] - stamps[n // 3]).total_seconds() / (n - n // 3), val_s


if __name__ == '__main__':
    if len(sys.argv) != 4 or sys.argv[1] != 'speed':
        sys.exit(__doc__)
    print(*read_speed(sys.argv[2], int(sys.argv[3])))
