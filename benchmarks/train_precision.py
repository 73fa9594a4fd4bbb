"""Seconds per training iteration of the built-in model's student stage, fp32 against bf16
autocast (``train:autocast``), with the share spent in degradation synthesis.

    python benchmarks/train_precision.py [--iters 20] [--opt options/default/train_default_v3_x4ST.yml]

It runs the options file's own model, mixture and batch size in-process (BasicSR's
``build_model``, ``RealESRGANDataset``) on the repository's sample photos (``kdsr-prepare``
into a temporary folder) with random-weight nets, so it needs no training data or teacher
file. bf16 is worth it only where the CPU computes bfloat16 natively (AVX512-BF16 or AMX).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import yaml
from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr.utils.options import ordered_yaml
from torch.utils.data import DataLoader, RandomSampler

import kdsr_arch  # noqa: F401  (registers the nets)
import kdsr_model  # noqa: F401  (registers the models)
from kdsr_arch import BlindSR_TA
from kdsr_model.cpu_precision import cpu_model, native_bf16

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _options(path, work, precision):
    with open(path) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    teacher = os.path.join(work, 'teacher.pth')
    if not os.path.exists(teacher):
        torch.manual_seed(0)
        torch.save({'params_ema': BlindSR_TA(**{k: v for k, v in opt['network_TA'].items() if k != 'type'})
                    .state_dict()}, teacher)
    train_set = opt['datasets']['train']
    train_set.update(dataroot_gt=os.path.join(work, 'prepared', 'sub'),
                     meta_info=os.path.join(work, 'prepared', 'meta_info.txt'), phase='train', scale=opt['scale'])
    opt['datasets'] = {'train': train_set}
    opt['train']['autocast'] = precision
    opt['path'].update(pretrain_network_g=teacher, pretrain_network_TA=teacher, resume_state=None,
                       experiments_root=work, models=work, log=work, training_states=work, visualization=work)
    opt.update(dist=False, rank=0, world_size=1, is_train=True, auto_resume=False, num_gpu=0)
    return opt


def measure(opt, iters):
    torch.manual_seed(0)
    model = build_model(opt)
    dataset, size = build_dataset(opt['datasets']['train']), opt['datasets']['train']['batch_size_per_gpu']
    sampler = RandomSampler(dataset, replacement=True, num_samples=size * (iters + 3))  # a few photos, many crops
    synth, step = [], []
    for i, batch in enumerate(DataLoader(dataset, batch_size=size, sampler=sampler, num_workers=0)):
        t0 = time.perf_counter()
        model.feed_data(batch)
        t1 = time.perf_counter()
        model.optimize_parameters(i + 1)
        t2 = time.perf_counter()
        if i >= 3:  # 3 warm-up iterations
            synth.append(t1 - t0)
            step.append(t2 - t1)
    return statistics.median(synth), statistics.median(step)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--opt', default=os.path.join(REPO, 'options', 'default', 'train_default_v3_x4ST.yml'))
    parser.add_argument('--iters', type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        prepare = os.path.join(os.path.dirname(sys.executable), 'kdsr-prepare')
        subprocess.run([prepare, '--hr', os.path.join(REPO, 'datasets', 'samples', 'train'), '--out',
                        os.path.join(work, 'prepared'), '--crop-size', '400', '--step', '200'], check=True,
                       capture_output=True)
        print(f'# {os.path.relpath(args.opt, REPO)}: {cpu_model()}, '
              f'{torch.get_num_threads()} threads, native bf16: {native_bf16()}, torch {torch.__version__}\n')
        print('| precision | synthesis s/iter | net step s/iter | total s/iter | synthesis share |')
        print('|---|---|---|---|---|')
        totals = {}
        for precision in (None, 'bf16'):
            synth, step = measure(_options(args.opt, work, precision), args.iters)
            totals[precision] = synth + step
            print(f'| {precision or "fp32"} | {synth:.3f} | {step:.3f} | {synth + step:.3f} | '
                  f'{synth / (synth + step):.0%} |')
        print(f'\nbf16 speed-up: {totals[None] / totals["bf16"]:.2f}x (medians over {args.iters} iterations)')


if __name__ == '__main__':
    main()
