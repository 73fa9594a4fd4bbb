"""Knowledge-distillation loss between teacher and student IDRs (registered as ``KDLoss``)."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from torch.nn import functional as F

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
