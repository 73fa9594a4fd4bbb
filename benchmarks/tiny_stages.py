"""Run the three tiny real-world stages in order and print seconds per iteration of each.

    python benchmarks/tiny_stages.py            # from the repository root, after pip install .

The GAN stage needs VGG19 weights: $KDSR_VGG19_WEIGHTS or
experiments/pretrained_models/vgg19-dcbb9e9d.pth (see README). Iteration times are BasicSR's
own ``time`` figures (mean over each print interval), excluding the first interval (warm-up).
"""
import os
import platform
import re
import statistics
import subprocess
import sys

import torch

STAGES = [('teacher (KDSRNetTAModel)', 'options/tiny/train_kdsrnet_x4TA_tiny.yml'),
          ('student (KDSRNetSTModel)', 'options/tiny/train_kdsrnet_x4ST_tiny.yml'),
          ('GAN student (KDSRGANSTModel)', 'options/tiny/train_kdsrgan_x4STV2_tiny.yml')]


def main():
    train = os.path.join(os.path.dirname(sys.executable), 'kdsr-train')
    print(f'# tiny stages on {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, '
          f'torch {torch.__version__}, CUDA {"yes" if torch.cuda.is_available() else "no"}\n')
    print('| stage | options | s/iter (median) | iterations |')
    print('|---|---|---|---|')
    for label, opt in STAGES:
        proc = subprocess.run([train, '-opt', opt], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f'| {label} | {opt} | failed: {proc.stderr.strip().splitlines()[-1]} | |')
            continue
        times = [float(t) for t in re.findall(r'time \(data\): ([\d.]+)', proc.stdout + proc.stderr)][1:]
        iters = re.findall(r'iter:\s+(\d+),', proc.stdout + proc.stderr)
        print(f'| {label} | {opt} | {statistics.median(times):.3f} | {iters[-1] if iters else "?"} |')


if __name__ == '__main__':
    main()
