"""Knowledge-distillation loss between teacher and student IDRs (registered as ``KDLoss``)."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from torch.nn import functional as F

from kdsr_arch.blindsr_arch import clean_downscale

from .errors import OptionError

_CRITERIA = ('kl', 'l1', 'l2')


@LOSS_REGISTRY.register()
class KDLoss(nn.Module):
    """Distillation loss over the IDR vectors D' of teacher and student.

    ``kl`` (default, the authors' loss): KL(softmax(D'_T / t) || softmax(D'_S / t)) with
    batch-mean reduction and no t**2 factor. ``l1`` and ``l2`` compare the raw vectors (the
    paper's Table 5 ablation). The teacher side is always detached. When the nets return
    lists of IDRs, the losses of the pairs are summed.

    Args:
        loss_weight (float): Loss weight. Default: 1.0.
        temperature (float): Softmax temperature t of the ``kl`` criterion. Default: 0.15.
        criterion (str): ``'kl'``, ``'l1'`` or ``'l2'``. Default: ``'kl'``.
    """

    def __init__(self, loss_weight=1.0, temperature=0.15, criterion='kl'):
        super().__init__()
        if criterion not in _CRITERIA:
            raise OptionError(f'KDLoss: criterion must be one of {", ".join(_CRITERIA)}, got {criterion!r}.')
        if temperature <= 0:
            raise OptionError(f'KDLoss: temperature must be positive, got {temperature}.')
        self.loss_weight = loss_weight
        self.temperature = temperature
        self.criterion = criterion

    def _pair(self, teacher, student):
        teacher = teacher.detach()
        if self.criterion == 'l1':
            return F.l1_loss(student, teacher)
        if self.criterion == 'l2':
            return F.mse_loss(student, teacher)
        p_log = F.log_softmax(teacher / self.temperature, dim=1)
        q_log = F.log_softmax(student / self.temperature, dim=1)
        return F.kl_div(q_log, p_log, reduction='batchmean', log_target=True)

    def forward(self, t_fea, s_fea):
        """``t_fea``, ``s_fea``: (B, 4C) tensors, or lists of them as the nets return."""
        t_list = list(t_fea) if isinstance(t_fea, (list, tuple)) else [t_fea]
        s_list = list(s_fea) if isinstance(s_fea, (list, tuple)) else [s_fea]
        if len(t_list) != len(s_list):
            raise ValueError(f'KDLoss: {len(t_list)} teacher IDRs but {len(s_list)} student IDRs.')
        loss = sum((self._pair(t, s) for t, s in zip(t_list, s_list)), torch.zeros((), device=s_list[0].device))
        return self.loss_weight * loss


def _first_idr(idr_prime):
    """D' from a tensor or from the one-item list ``[idr_prime]`` that the nets return in training."""
    return idr_prime[0] if isinstance(idr_prime, (list, tuple)) else idr_prime


def _log_energy(x):
    return torch.log10(x.pow(2).mean(dim=(1, 2, 3)) + 1e-7)


def _high_pass(x):
    return x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def degradation_stats(lq, gt):
    """How each LQ departs from the antialiased bicubic downscale of its GT: (B, 4) log10 energies.

    ``[residual, fine residual, fine-detail gain, mid-detail gain]``: the energy of LQ - ref,
    of its 3x3 high-pass, and the log ratios of LQ's to ref's high-pass energy at full and half
    resolution (blur lowers both gains, noise raises the fine one). Computed in fp32; any
    branch of the degradation mixture gets them from the pair alone.
    """
    lq, gt = lq.detach().float(), gt.detach().float()
    ref = clean_downscale(gt, lq.shape[-2:])
    residual = lq - ref
    half_lq, half_ref = F.avg_pool2d(lq, 2), F.avg_pool2d(ref, 2)
    return torch.stack([
        _log_energy(residual),
        _log_energy(_high_pass(residual)),
        _log_energy(_high_pass(lq)) - _log_energy(_high_pass(ref)),
        _log_energy(_high_pass(half_lq)) - _log_energy(_high_pass(half_ref)),
    ], dim=1)


# degradation_stats over the default mixture span about these ranges; mapped to about [0, 1]
_STATS_LOW = (-6.0, -6.0, -1.5, -1.0)
_STATS_SPAN = (4.5, 4.5, 3.0, 2.0)


@LOSS_REGISTRY.register()
class IDRProbeLoss(nn.Module):
    """Auxiliary loss that makes the IDR carry the degradation (not in the paper; off unless set).

    Trained on the authors' recipe for a few thousand iterations, the teacher's IDR stays a
    near-constant that tracks image content, not degradation (docs/MODEL.md). This loss asks the
    first four entries of D' to read out :func:`degradation_stats` of the training pair (scaled
    to about [0, 1]) under a mean squared error, so the IDR has to see the degradation; the
    student learns it through the KD loss (or directly, when it carries this loss too). No
    parameters: nothing but the net is saved or resumed.

    Args:
        loss_weight (float): Loss weight. Default: 0.1.
    """

    def __init__(self, loss_weight=0.1):
        super().__init__()
        self.loss_weight = loss_weight
        self.register_buffer('low', torch.tensor(_STATS_LOW), persistent=False)
        self.register_buffer('span', torch.tensor(_STATS_SPAN), persistent=False)

    def forward(self, idr_prime, lq, gt):
        """``idr_prime``: (B, 4C) or the nets' list of it; ``lq``, ``gt``: the training pair."""
        idr = _first_idr(idr_prime)
        target = (degradation_stats(lq, gt) - self.low) / self.span
        return self.loss_weight * F.mse_loss(idr[:, :target.shape[1]].float(), target)


@LOSS_REGISTRY.register()
class IDRGroupLoss(nn.Module):
    """Asks the IDRs of crops that share one degradation to agree (not in the paper; off unless set).

    A student's IDR can follow the photo's content as much as its degradation (docs/MODEL.md,
    stage 21), and the KD loss grows both parts alike. With ``degradation_mixture:
    shared_degradation: 4`` the batch comes in groups of 4 consecutive crops degraded alike; this
    loss is the variance of D' within the groups over its variance across the whole batch: 0 when
    a group agrees, about 1 when the grouping means nothing, and blind to the scale of D' (shrinking
    the IDR does not lower it; only taking the groups apart does). No parameters.

    Args:
        loss_weight (float): Loss weight. Default: 1.0.
    """

    def __init__(self, loss_weight=1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, idr_prime, group):
        """``idr_prime``: (B, 4C) or the nets' list of it; ``group``: crops per shared degradation."""
        idr = _first_idr(idr_prime).float()
        if group < 2 or idr.size(0) % group:
            raise ValueError(f'IDRGroupLoss: a batch of {idr.size(0)} is not made of groups of {group}.')
        groups = idr.reshape(idr.size(0) // group, group, -1)
        within = (groups - groups.mean(1, keepdim=True)).pow(2).mean()
        total = (idr - idr.mean(0)).pow(2).mean().clamp_min(1e-12)
        return self.loss_weight * within / total


def _relative_distances(x):
    """(B, D) -> the (B, B - 1) distances of each row to the others, over their mean (fp32)."""
    x = x.float()
    d = torch.cdist(x, x)
    off = ~torch.eye(x.size(0), dtype=torch.bool, device=x.device)
    d = d[off].view(x.size(0), x.size(0) - 1)
    return d / d.mean().clamp_min(1e-12)


@LOSS_REGISTRY.register()
class KDRelationLoss(nn.Module):
    """Distils the geometry of the teacher's IDRs over a batch (not in the paper; off unless set).

    The KD loss matches each student IDR to its teacher's one at a time; the student can meet it
    and still place two crops with one degradation far apart when their contents differ, which
    the teacher (it sees the HR) does not (docs/MODEL.md, stage 21). This loss compares the
    distances between the IDRs D' of every two samples of the batch, each set over its mean
    distance (so blind to scale), under a smooth L1 (relational KD, Park et al. 2019): the
    student's IDRs should sit near each other where the teacher's do. Batches of crops that
    share a degradation (``degradation_mixture:shared_degradation: 4``) give it pairs of one
    degradation and two contents. No parameters.

    Args:
        loss_weight (float): Loss weight. Default: 1.0.
        beta (float): Where the smooth L1 turns from quadratic to linear. Default: 0.5.
    """

    def __init__(self, loss_weight=1.0, beta=0.5):
        super().__init__()
        if beta <= 0:
            raise OptionError(f'KDRelationLoss: beta must be positive, got {beta}.')
        self.loss_weight = loss_weight
        self.beta = beta

    def forward(self, t_fea, s_fea):
        """``t_fea``, ``s_fea``: (B, 4C) tensors, or the nets' lists of them (the first is used); B >= 3."""
        teacher = _first_idr(t_fea).detach()
        student = _first_idr(s_fea)
        if student.size(0) < 3:
            raise ValueError(f'KDRelationLoss: needs a batch of at least 3 samples, got {student.size(0)}.')
        return self.loss_weight * F.smooth_l1_loss(_relative_distances(student), _relative_distances(teacher),
                                                   beta=self.beta)
