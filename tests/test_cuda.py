"""The same paths on a CUDA device (skipped where there is none: run by scripts/gpu_check.sh)."""
import random

import numpy as np
import pytest
import torch

from kdsr_arch import BlindSR_ST, BlindSR_TA
from conftest import SAMPLE_PHOTOS, save_student

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')]


@pytest.fixture(scope='module')
def student_file(tmp_path_factory):
    return save_student(tmp_path_factory.mktemp('cuda') / 'student.pth', n_feats=16, n_sr_blocks=4)


def _photo(h=48, w=64):
    import cv2
    return np.ascontiguousarray(cv2.imread(SAMPLE_PHOTOS[1])[100:100 + h, 100:100 + w])


def test_upscaler_on_cuda_matches_cpu_and_fp16_stays_close(student_file):
    from kdsr_model.upscaler import KDSRUpscaler
    img = _photo()
    cpu, _ = KDSRUpscaler(student_file, device='cpu', bf16=False).enhance(img)
    fp32, _ = KDSRUpscaler(student_file, device='cuda', half=False).enhance(img)
    fp16, _ = KDSRUpscaler(student_file, device='cuda').enhance(img)
    assert np.abs(cpu.astype(int) - fp32.astype(int)).max() <= 1
    assert np.abs(fp32.astype(int) - fp16.astype(int)).max() <= 4


def test_tiles_agree_on_cuda(student_file):
    from kdsr_model.upscaler import KDSRUpscaler
    img = _photo(70, 90)
    whole, _ = KDSRUpscaler(student_file, device='cuda', half=False).enhance(img)
    tiled, _ = KDSRUpscaler(student_file, device='cuda', half=False, tile=32).enhance(img)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


@pytest.mark.parametrize('branch', ['clean', 'classic', 'realworld_mild', 'realworld'])
def test_mixture_synthesis_runs_on_cuda(branch):
    from kdsr_model.data.mixture import MixtureDegrader
    random.seed(0)
    torch.manual_seed(0)
    deg = MixtureDegrader({'scale': 4, 'gt_size': 64, 'degradation_mixture': {branch: 1}}, device='cuda')
    pulse = torch.zeros(2, 21, 21)
    pulse[:, 10, 10] = 1
    batch = {'gt': torch.rand(2, 3, 96, 96), 'kernel1': pulse, 'kernel2': pulse, 'sinc_kernel': pulse}
    lq, gt = deg(batch)
    assert lq.device.type == gt.device.type == 'cuda' and lq.shape == (2, 3, 16, 16)


def test_teacher_student_step_on_cuda():
    from kdsr_model.losses import KDLoss
    teacher = BlindSR_TA(n_feats=16, n_encoder_res=2, n_sr_blocks=2).to('cuda').eval()
    student = BlindSR_ST(n_feats=16, n_encoder_res=2, n_sr_blocks=2).to('cuda').train()
    lq, gt = torch.rand(2, 3, 16, 16, device='cuda'), torch.rand(2, 3, 64, 64, device='cuda')
    with torch.no_grad():
        t_fea = teacher.encode(lq, gt)[1]
    sr, s_fea = student(lq)
    loss = (sr - gt).abs().mean() + KDLoss()(t_fea, s_fea)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in student.E_st.parameters() if p.requires_grad)
