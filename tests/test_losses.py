import math

import pytest
import torch
from basicsr.losses import build_loss

from kdsr_model.losses import KDLoss


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
