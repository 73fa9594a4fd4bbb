"""Pick a training run's checkpoint by its selection crops, and export it for inference.

    python scripts/select_checkpoint.py experiments/NAME OUT_PREFIX

Reads the PSNR of each validation set the run logged at each validation (the default recipe's
selection crops: select_clean, select_mild, select_heavy), prints one row per iteration with
their mean, and exports the EMA weights of the checkpoint with the best mean, and of the last
one, to OUT_PREFIX_<iteration>.pth (scripts/export_model.py). Only iterations that have a saved
checkpoint (experiments/NAME/models/net_g_<iteration>.pth) are candidates.
"""
import glob
import os
import sys

from export_model import main as export
from training_log import read_validations


def main(run, prefix):
    logs = sorted(glob.glob(os.path.join(glob.escape(run), 'train_*.log')), key=os.path.getmtime)
    if not logs:
        sys.exit(f'{run}: no training log (train_*.log) in this folder; give the experiment folder of a run')
    log, models = logs[-1], os.path.join(run, 'models')
    rows = read_validations(log)
    saved = {it: os.path.join(models, f'net_g_{it}.pth') for it in rows}
    saved = {it: p for it, p in saved.items() if os.path.isfile(p)}
    if not saved:
        sys.exit(f'{log}: no validation with a saved checkpoint beside it in {models}')
    sets = sorted({s for r in rows.values() for s in r})
    print('iteration ' + ' '.join(sets) + ' mean')
    mean = {it: sum(r.values()) / len(r) for it, r in rows.items()}
    for it in sorted(rows):
        print(f'{it} ' + ' '.join(f'{rows[it].get(s, float("nan")):.4f}' for s in sets) + f' {mean[it]:.4f}'
              + ('' if it in saved else ' (no checkpoint)'))
    best, last = max(saved, key=lambda it: mean[it]), max(saved)
    print(f'best mean: iteration {best} ({mean[best]:.4f} dB); last: {last} ({mean[last]:.4f} dB)')
    for it in sorted({best, last}):
        export(saved[it], f'{prefix}_{it}.pth')


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
