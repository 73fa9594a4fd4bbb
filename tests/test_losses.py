import math
import os

import pytest
import torch
from basicsr.losses import build_loss

from kdsr_model.errors import OptionError
from kdsr_model.losses import IDRGroupLoss, IDRProbeLoss, KDLoss, KDRelationLoss, degradation_stats
from conftest import REPO


def _idrs(seed=0, b=4, d=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g, requires_grad=True)


def test_kl_matches_the_authors_expression():
    t, s = _idrs()
    loss = KDLoss(loss_weight=2.0, temperature=0.15)([t], [s])
    p = torch.softmax(t / 0.15, dim=1)
    log_q = torch.log_softmax(s / 0.15, dim=1)
    expected = 2.0 * (p * (torch.log(p) - log_q)).sum() / t.shape[0]
    torch.testing.assert_close(loss, expected)


def test_kl_is_zero_for_identical_idrs_and_positive_otherwise():
    t, s = _idrs()
    assert KDLoss()([t], [t.clone()]).abs().item() < 1e-6
    assert KDLoss()([t], [s]).item() > 0


def test_teacher_side_gets_no_gradient():
    t, s = _idrs()
    t.requires_grad_(True)
    KDLoss()([t], [s]).backward()
    assert t.grad is None and s.grad is not None and s.grad.abs().sum() > 0


@pytest.mark.parametrize('criterion,fn', [('l1', torch.nn.functional.l1_loss), ('l2', torch.nn.functional.mse_loss)])
def test_l1_and_l2_variants(criterion, fn):
    t, s = _idrs(1)
    torch.testing.assert_close(KDLoss(0.5, criterion=criterion)(t, s), 0.5 * fn(s, t))


def test_lists_of_pairs_are_summed():
    t1, s1 = _idrs(1)
    t2, s2 = _idrs(2)
    loss = KDLoss()([t1, t2], [s1, s2])
    torch.testing.assert_close(loss, KDLoss()(t1, s1) + KDLoss()(t2, s2))


def test_built_from_options_through_basicsr():
    loss = build_loss({'type': 'KDLoss', 'loss_weight': 1, 'temperature': 0.15})
    assert isinstance(loss, KDLoss) and math.isclose(loss.temperature, 0.15)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match='criterion'):
        KDLoss(criterion='cosine')
    with pytest.raises(ValueError, match='temperature'):
        KDLoss(temperature=0)


def _photo_pair(name='coffee.png', size=128):
    import cv2
    img = cv2.imread(os.path.join(REPO, 'datasets', 'samples', 'train', name))[:size, :size, ::-1] / 255.0
    return torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float()


def test_degradation_stats_tell_clean_blur_and_noise_apart():
    from torch.nn import functional as F
    gt = _photo_pair()
    clean = F.interpolate(gt, scale_factor=0.25, mode='bicubic', antialias=True)
    k = torch.exp(-torch.arange(-6, 7.)**2 / (2 * 2.5**2))
    k = (k[:, None] * k[None]) / k.sum()**2
    blurred = F.conv2d(F.pad(gt, (6, 6, 6, 6), mode='reflect'), k.expand(3, 1, 13, 13), groups=3)
    blurry = F.interpolate(blurred, scale_factor=0.25, mode='bicubic', antialias=True)
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 10 / 255
    s = {name: degradation_stats(lq, gt)[0] for name, lq in (('clean', clean), ('blur', blurry), ('noise', noisy))}
    assert s['clean'][0] < -6 and s['blur'][0] > s['clean'][0] + 2 and s['noise'][0] > s['clean'][0] + 2
    assert abs(s['clean'][2]) < 0.05 and abs(s['clean'][3]) < 0.05  # no detail gained or lost
    assert s['blur'][2] < -0.3 and s['blur'][3] < -0.1  # blur removes fine and mid detail
    assert s['noise'][2] > 0.3 and s['noise'][1] > s['blur'][1]  # noise adds fine detail


def test_idr_probe_loss_reads_the_first_four_entries_and_is_built_from_options():
    gt = _photo_pair(size=64)
    lq = torch.nn.functional.avg_pool2d(gt, 4)
    loss = build_loss({'type': 'IDRProbeLoss', 'loss_weight': 0.5})
    assert isinstance(loss, IDRProbeLoss) and loss.loss_weight == 0.5
    target = (degradation_stats(lq, gt) - loss.low) / loss.span
    idr = torch.rand(1, 16)
    idr[:, :4] = target
    idr.requires_grad_(True)
    assert loss([idr], lq, gt).item() == pytest.approx(0, abs=1e-10)
    off = idr.detach().clone()
    off[:, 0] += 1
    off.requires_grad_(True)
    value = loss(off, lq, gt)
    assert value.item() == pytest.approx(0.5 * 1 / 4, rel=1e-5)  # MSE over 4 entries, weighted
    value.backward()
    assert off.grad[:, 0].abs().item() > 0 and torch.count_nonzero(off.grad[:, 4:]) == 0


def test_idr_group_loss_is_zero_when_groups_agree_and_near_one_for_random_groups():
    loss = build_loss({'type': 'IDRGroupLoss', 'loss_weight': 2.0})
    assert isinstance(loss, IDRGroupLoss)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 1, 32, generator=g)
    agreeing = centres.expand(8, 4, 32).reshape(32, 32)
    assert loss([agreeing], 4).item() == pytest.approx(0, abs=1e-6)
    spread = (centres + 0.1 * torch.randn(8, 4, 32, generator=g)).reshape(32, 32)
    random_rows = torch.randn(32, 32, generator=g)
    near, far = loss(spread, 4).item(), loss(random_rows, 4).item()
    assert 0 < near < 0.05 and 2 * 0.6 < far < 2 * 1.0  # random groups: about (g-1)/g of the variance
    assert loss(3 * spread + 1, 4).item() == pytest.approx(loss(spread, 4).item(), rel=1e-5)  # blind to scale
    # the gradient pulls each row towards its group's mean
    x = spread.clone().requires_grad_(True)
    loss(x, 4).backward()
    towards = -(x.grad.reshape(8, 4, 32) * (spread.reshape(8, 4, 32) - spread.reshape(8, 4, 32).mean(1, keepdim=True)))
    assert towards.sum() < 0
    with pytest.raises(ValueError, match='a batch of 6 is not made of groups of 4'):
        loss(torch.randn(6, 32), 4)


def test_kd_relation_loss_compares_the_batch_geometry_blind_to_scale_and_shift():
    loss = build_loss({'type': 'KDRelationLoss', 'loss_weight': 2.0, 'beta': 0.5})
    assert isinstance(loss, KDRelationLoss)
    g = torch.Generator().manual_seed(0)
    # teacher: 4 degradations, 4 crops each, the crops close together
    teacher = (torch.randn(4, 1, 32, generator=g) + 0.05 * torch.randn(4, 4, 32, generator=g)).reshape(16, 32)
    assert loss([teacher], [3 * teacher + 1]).item() == pytest.approx(0, abs=1e-6)
    # a student whose crops of one degradation lie as far apart as different degradations
    content = torch.randn(16, 32, generator=g)
    bad = (teacher + content).requires_grad_(True)
    value = loss(teacher, bad)
    assert value.item() > 0.05
    value.backward()
    assert bad.grad.abs().sum() > 0
    better = teacher + 0.1 * content
    assert 0 < loss(teacher, better).item() < value.item()
    with pytest.raises(ValueError, match='at least 3 samples, got 2'):
        loss(teacher[:2], teacher[:2])
    with pytest.raises(OptionError, match='KDRelationLoss: beta must be positive'):
        KDRelationLoss(beta=0)
