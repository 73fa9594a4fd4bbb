"""Small-scale reproduction of the paper's Tables 4 and 5 on the shared photos (CPU, minutes).

    python scripts/reproduce_classic_small.py [--photos ../shared/data/photos] [--iters 1000] [--work runs/repro]

With the tiny iso-Gaussian x4 options (``options/tiny/train_kdsr_classic_iso_x4*_tiny.yml``) and
the same iteration budget for every run, trains on ``PHOTOS/train``: the teacher, then four
students from it: KD with KL (the paper), no KD (KD weight 0: the encoder learns through L1
only, Table 4's S2), KD with L1, KD with L2 (Table 5). Then prints one Markdown table:
parameters, Gaussian8 x4 PSNR/SSIM (Y, crop 4) on ``PHOTOS/val`` (``kdsr-eval``; bicubic as a
row) and the IDR separability of each model on an iso sweep of the val photos (``kdsr-idr``:
5-NN accuracy of the blur level, chance 0.125, and linear-probe R^2 on sigma).
The paper's ordering is T > S(KL) > S(no KD) and KL >= L1, L2; the table is what this run gives.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import yaml
from basicsr.utils.options import ordered_yaml

from kdsr_arch.checkpoint import load_kdsr
from kdsr_model.evaluate import evaluate
from kdsr_model.idr import run as idr_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
STUDENTS = [('S (KD: KL)', 'kl', 1.0), ('S (no KD)', 'kl', 0.0), ('S (KD: L1)', 'l1', 1.0), ('S (KD: L2)', 'l2', 1.0)]


def _run(cmd, cwd, log):
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        sys.exit(f'{" ".join(map(str, cmd))} failed; see {log}')


def options(name, tag, work, args, **path):
    with open(os.path.join(REPO, 'options', 'tiny', name)) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    opt['name'] = f'repro_{tag}'
    train_set = opt['datasets']['train']
    train_set.update(dataroot_gt=os.path.join(work, 'train_sub', 'sub'),
                     meta_info=os.path.join(work, 'train_sub', 'meta_info.txt'), batch_size_per_gpu=args.batch,
                     dataset_enlarge_ratio=1)
    opt['gt_size'] = train_set['gt_size'] = 128
    g8 = os.path.join(work, 'val_gaussian8_x4')
    opt['datasets']['val'].update(name='val_sig2.60', dataroot_gt=os.path.join(g8, 'HR'),
                                  dataroot_lq=os.path.join(g8, 'sig2.60'))
    opt['train']['total_iter'] = args.iters
    opt['val']['val_freq'] = opt['logger']['save_checkpoint_freq'] = args.iters
    opt['logger']['print_freq'] = max(1, args.iters // 10)
    opt['path'].update(path)
    return opt


def train(opt, work):
    path = os.path.join(work, f'{opt["name"]}.yml')
    with open(path, 'w') as f:
        yaml.dump(opt, f, Dumper=ordered_yaml()[1])
    t0 = time.time()
    _run([os.path.join(BIN, 'kdsr-train'), '-opt', path], work, os.path.join(work, f'{opt["name"]}.log'))
    seconds = time.time() - t0
    os.makedirs(os.path.join(work, 'models'), exist_ok=True)
    model = os.path.join(work, 'models', f'{opt["name"]}.pth')  # one file name per run: the table's row names
    shutil.copyfile(os.path.join(work, 'experiments', opt['name'], 'models', 'net_g_latest.pth'), model)
    return model, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--photos', default=os.path.join(REPO, '..', 'shared', 'data', 'photos'))
    parser.add_argument('--iters', type=int, default=1000)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--work', default=os.path.join('runs', 'repro'))
    args = parser.parse_args()
    start = time.time()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    if not os.path.isdir(os.path.join(work, 'train_sub')):
        _run([os.path.join(BIN, 'kdsr-prepare'), '--hr', os.path.join(args.photos, 'train'), '--out',
              os.path.join(work, 'train_sub'), '--crop-size', '400', '--step', '300'], work,
             os.path.join(work, 'prepare.log'))
    if not os.path.isdir(os.path.join(work, 'val_gaussian8_x4')):
        _run([os.path.join(BIN, 'kdsr-testset'), '--hr', os.path.join(args.photos, 'val'), '--out',
              os.path.join(work, 'val_gaussian8_x4'), '--protocol', 'gaussian8', '--scale', '4'], work,
             os.path.join(work, 'testset.log'))

    runs = [('T (oracle HR)', *train(options('train_kdsr_classic_iso_x4TA_tiny.yml', 'T', work, args), work))]
    teacher = runs[0][1]
    for label, criterion, weight in STUDENTS:
        opt = options('train_kdsr_classic_iso_x4ST_tiny.yml', f'S_{criterion}_w{weight:g}', work, args,
                      pretrain_network_g=teacher, pretrain_network_TA=teacher)
        opt['train']['kd_opt'].update(criterion=criterion, loss_weight=weight)
        runs.append((label, *train(opt, work)))

    results = evaluate([path for _, path, _ in runs], [os.path.join(work, 'val_gaussian8_x4')], progress=False)
    means = {a['model']: a for a in results['aggregates'] if a['degradation'] is None}
    bicubic = means['Bicubic']
    print(f'# Small-scale KDSR-classic reproduction: iso Gaussian x4, {args.iters} iterations per run, batch '
          f'{args.batch}, HR patches 128, tiny nets (options/tiny), trained on {len(os.listdir(os.path.join(work, "train_sub", "sub")))} '
          f'sub-images of PHOTOS/train\n')
    print('| model | params | train time (s) | Gaussian8 x4 PSNR/SSIM on val | IDR 5-NN acc. (chance 0.125) | '
          'IDR linear R^2 |')
    print('|---|---|---|---|---|---|')
    print(f'| Bicubic | - | - | {bicubic["psnr"]:.2f}/{bicubic["ssim"]:.4f} | - | - |')
    for (label, path, seconds), info in zip(runs, [m for m in results['models'] if m['kind'] != 'bicubic']):
        net, _ = load_kdsr(path)
        row = means[info['name']]
        idr = idr_run(path, os.path.join(args.photos, 'val'), os.path.join(work, 'idr', info['name']), sweep='iso',
                      levels=8, crops=8, progress=False)
        print(f'| {label} | {sum(p.numel() for p in net.parameters()):,} | {seconds:.0f} | '
              f'{row["psnr"]:.2f}/{row["ssim"]:.4f} | {idr["knn_accuracy"]:.3f} | {idr["linear_r2"]:.3f} |')
    print(f'\nTotal time: {time.time() - start:.0f} s. Logs, option files and t-SNE plots: {work}')


if __name__ == '__main__':
    main()
