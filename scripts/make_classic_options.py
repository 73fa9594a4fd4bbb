"""Write the KDSR-classic option files (``options/train_kdsr_classic_*.yml``) from one template.

    python scripts/make_classic_options.py [--out options] [--check]

Settings: ``iso`` (isotropic Gaussian, no noise) and ``anisonoise`` (anisotropic Gaussian +
noise U(0, 25)), at x2, x3 and x4, teacher (TA) and student (ST), sizes KDSR_S-M (and
KDSR_S-L for iso, as the authors). Hyper-parameters are the authors' classic scripts
(REFERENCE.md 7.3), with their epochs turned into iterations: one epoch is 62,100 samples
(18 repeats of DF2K's 3,450 images), i.e. 971 iterations at batch 64.
``--check`` exits 1 if a file on disk differs from what this script would write.
"""
import argparse
import os
import sys

ITERS_PER_EPOCH = 971
SIZES = {'M': dict(n_feats=64, n_encoder_res=9, n_sr_blocks=53), 'L': dict(n_feats=128, n_encoder_res=5, n_sr_blocks=28)}
SETTINGS = {
    'iso': dict(degradation='    type: iso  # sigma ~ U(0.2, scale): the authors\' range for the scale\n'
                '    noise: 0\n', sizes=('M', 'L'), encoder_epochs=0, student_epochs=600, student_decay=150),
    'anisonoise': dict(degradation='    type: aniso  # lambda1, lambda2 ~ U(0.2, 4.0), theta ~ U(0, pi)\n'
                       '    lambda_min: 0.2\n    lambda_max: 4.0\n    noise: 25  # std ~ U(0, 25) per sample\n',
                       sizes=('M', ), encoder_epochs=100, student_epochs=500, student_decay=125),
}
TEACHER_EPOCHS, TEACHER_DECAY = 500, 125
# RealESRGANDataset reads these keys; the classic models use only its GT crops (cheapest values)
DATASET_KERNEL_KEYS = """\
    # keys RealESRGANDataset requires; the classic models use only its GT and ignore its kernels
    blur_kernel_size: 21
    kernel_list: ['iso']
    kernel_prob: [1]
    sinc_prob: 0
    blur_sigma: [0.2, 3]
    betag_range: [0.5, 4]
    betap_range: [1, 2]
    blur_kernel_size2: 21
    kernel_list2: ['iso']
    kernel_prob2: [1]
    sinc_prob2: 0
    blur_sigma2: [0.2, 1.5]
    betag_range2: [0.5, 4]
    betap_range2: [1, 2]
    final_sinc_prob: 0
"""
VAL = {
    'iso': ('Set14_gaussian8_x{s}_sig{sig}', 'datasets/benchmark/Set14_gaussian8_x{s}/HR',
            'datasets/benchmark/Set14_gaussian8_x{s}/sig{sig}'),
    # the authors' first test kernel (lambda1 4.0, lambda2 1.5, theta 120 deg) with noise 10
    'anisonoise': ('Set14_aniso_noise_x{s}_authors1_n10', 'datasets/benchmark/Set14_aniso_noise_x{s}/HR',
                   'datasets/benchmark/Set14_aniso_noise_x{s}/authors1_n10'),
}
VAL_SIGMA = {2: '1.20', 3: '1.80', 4: '2.60'}  # a middle Gaussian8 kernel (kdsr-eval runs all eight)


def name_of(setting, scale, stage, size):
    return f'train_kdsr_classic_{setting}_x{scale}{stage}{"" if size == "M" else "_L"}'


def network(arch, scale, size):
    kw = SIZES[size]
    return (f'  type: {arch}\n  n_feats: {kw["n_feats"]}\n  n_encoder_res: {kw["n_encoder_res"]}\n'
            f'  scale: {scale}\n  n_sr_blocks: {kw["n_sr_blocks"]}\n')


def render(setting, scale, stage, size):
    cfg = SETTINGS[setting]
    teacher_name = name_of(setting, scale, 'TA', size)[len('train_'):]
    name = name_of(setting, scale, stage, size)[len('train_'):]
    val_name, val_gt, val_lq = (v.format(s=scale, sig=VAL_SIGMA[scale]) for v in VAL[setting])
    if stage == 'TA':
        header = (f'# KDSR-classic teacher KDSR_T-{size}, {setting}, x{scale}: L1 only; the teacher encoder sees LR +\n'
                  f'# pixel-unshuffled HR. Authors: {TEACHER_EPOCHS} epochs, lr 1e-4 halved every {TEACHER_DECAY} '
                  f'epochs (1 epoch = {ITERS_PER_EPOCH} iterations at batch 64).\n')
        model, path = 'KDSRClassicTAModel', ('  pretrain_network_g: ~\n  param_key_g: params\n  strict_load_g: true\n'
                                             '  resume_state: ~\n')
        nets = 'network_g:\n' + network('BlindSR_TA', scale, size)
        total = TEACHER_EPOCHS * ITERS_PER_EPOCH
        step = TEACHER_DECAY * ITERS_PER_EPOCH
        milestones = ', '.join(str(step * i) for i in range(1, TEACHER_EPOCHS // TEACHER_DECAY))
        schedule = (f'  scheduler:\n    type: MultiStepLR\n    milestones: [{milestones}]\n    gamma: 0.5\n\n'
                    f'  total_iter: {total}\n  warmup_iter: -1\n')
        kd = ''
    else:
        teacher = f'experiments/{teacher_name}/models/net_g_latest.pth'
        header = (f'# KDSR-classic student KDSR_S-{size}, {setting}, x{scale}: L1 + KD (KL, temperature 0.15) towards\n'
                  f'# the frozen teacher; G starts from the teacher\'s ({teacher_name}).\n')
        model = 'KDSRClassicSTModel'
        path = (f'  pretrain_network_g: {teacher}  # the teacher: only G is copied (authors)\n'
                f'  param_key_g: params\n  strict_load_g: true\n  pretrain_network_TA: {teacher}\n'
                '  param_key_TA: params\n  resume_state: ~\n  ignore_resume_networks: network_TA\n')
        nets = ('network_g:\n' + network('BlindSR_ST', scale, size) + '\nnetwork_TA:\n' +
                network('BlindSR_TA', scale, size))
        enc = cfg['encoder_epochs'] * ITERS_PER_EPOCH
        total = cfg['student_epochs'] * ITERS_PER_EPOCH
        decay = cfg['student_decay'] * ITERS_PER_EPOCH
        schedule = ('  scheduler:  # the manual schedule below sets the lr every iteration\n'
                    f'    type: MultiStepLR\n    milestones: [{total}]\n    gamma: 1\n\n'
                    f'  total_iter: {total}\n  warmup_iter: -1\n\n')
        if enc:
            schedule += (f'  # KD-only phase first ({cfg["encoder_epochs"]} epochs): lr 2e-4, x0.1 every 60 epochs\n'
                         f'  encoder_iter: {enc}\n  lr_encoder: !!float 2e-4\n  gamma_encoder: 0.1\n'
                         f'  lr_decay_encoder: {60 * ITERS_PER_EPOCH}\n')
        schedule += (f'  # then L1 + KD: lr_sr * gamma_sr ** floor((iter - encoder_iter) / lr_decay_sr)\n'
                     f'  lr_sr: !!float 1e-4\n  gamma_sr: 0.5\n  lr_decay_sr: {decay}\n')
        kd = '  kd_opt:\n    type: KDLoss\n    loss_weight: 1\n    temperature: 0.15\n'
    return f"""{header}# Generated by scripts/make_classic_options.py: edit the script, not this file.
name: {name}
model_type: {model}
scale: {scale}
num_gpu: auto
manual_seed: 1

classic_degradation:
{cfg['degradation']}    per_batch: false  # the authors draw one kernel per batch: true
gt_size: {64 * scale}  # LR patches 64x64

datasets:
  train:
    name: DF2K
    type: RealESRGANDataset  # GT crops (400x400, flips and rotations); degraded on the device by the model
    dataroot_gt: datasets/DF2K_sub/sub  # kdsr-prepare --hr datasets/DF2K/HR --out datasets/DF2K_sub
    meta_info: datasets/DF2K_sub/meta_info.txt
    io_backend:
      type: disk
{DATASET_KERNEL_KEYS}
    use_hflip: true
    use_rot: true

    use_shuffle: true
    num_worker_per_gpu: 5
    batch_size_per_gpu: 16  # x 4 GPUs = the authors' batch 64
    dataset_enlarge_ratio: 1
    prefetch_mode: ~

  val:
    name: {val_name}  # kdsr-testset --hr Set14/HR --out {os.path.dirname(val_gt)} ...
    type: PairedImageDataset
    dataroot_gt: {val_gt}
    dataroot_lq: {val_lq}
    io_backend:
      type: disk

{nets}
path:
{path}
train:
  ema_decay: 0  # the authors keep no EMA copy
  optim_g:
    type: Adam
    lr: !!float 1e-4
    weight_decay: 0
    betas: [0.9, 0.999]

{schedule}
  pixel_opt:
    type: L1Loss
    loss_weight: 1.0
    reduction: mean
{kd}
val:
  val_freq: !!float 5e3
  save_img: false
  metrics:
    psnr:
      type: calculate_psnr
      crop_border: {scale}
      test_y_channel: true
    ssim:
      type: calculate_ssim
      crop_border: {scale}
      test_y_channel: true

logger:
  print_freq: 100
  save_checkpoint_freq: !!float 5e3
  use_tb_logger: true
  wandb:
    project: ~
    resume_id: ~

dist_params:
  backend: nccl
  port: 29500
"""


def all_files():
    for setting, cfg in SETTINGS.items():
        for scale in (2, 3, 4):
            for size in cfg['sizes']:
                for stage in ('TA', 'ST'):
                    yield name_of(setting, scale, stage, size) + '.yml', render(setting, scale, stage, size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='options')
    parser.add_argument('--check', action='store_true')
    args = parser.parse_args(argv)
    stale = []
    for name, text in all_files():
        path = os.path.join(args.out, name)
        if args.check:
            if not os.path.isfile(path) or open(path).read() != text:
                stale.append(path)
            continue
        with open(path, 'w') as f:
            f.write(text)
    if stale:
        print(f'out of date (run python scripts/make_classic_options.py): {", ".join(stale)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
