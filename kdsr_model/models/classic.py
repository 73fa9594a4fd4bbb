"""KDSR-classic teacher and student: the paper's blur + bicubic + noise degradation (Eq. 1).

GT patches come from a stock BasicSR dataset that yields GT only (``RealESRGANDataset``,
disk or LMDB, its kernels unused); each training batch is cropped to ``gt_size`` per sample
and degraded on the model's device by :class:`kdsr_model.data.classic.ClassicDegrader`.
Validation and test read paired data (e.g. a ``kdsr-testset`` folder).
"""
import math

from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from ..data.classic import ClassicDegrader
from ..data.mixture import random_crops
from ..errors import OptionError
from .kdsrnet_model import GeneratorStepMixin, StudentMixin, TeacherMixin
from .realworld import SynthesisMixin


class ClassicDegradationMixin(SynthesisMixin):
    """Per-sample random ``gt_size`` crops of the GT batch, then the classic degradation.

    Call :meth:`init_degradation` at the end of ``__init__``.
    """

    def init_degradation(self):
        try:
            self.degrader = ClassicDegrader(self.opt.get('classic_degradation') or {}, self.opt['scale'])
        except ValueError as err:
            raise OptionError(str(err)) from None
        size, scale = self.opt.get('gt_size'), self.opt['scale']
        if self.is_train and (not isinstance(size, int) or size % scale):
            raise OptionError(f'gt_size ({size}) must be a whole multiple of the scale ({scale}), so that the LR '
                              'patch is exact; set a top-level gt_size such as 64 * scale.')

    def synthesise(self, data):
        self.gt = random_crops(data['gt'].to(self.device), self.opt['gt_size'])
        self.lq = self.degrader(self.gt)


@MODEL_REGISTRY.register()
class KDSRClassicTAModel(TeacherMixin, GeneratorStepMixin, ClassicDegradationMixin, SRModel):
    """Classic teacher (KD-IDE_T sees LR + pixel-unshuffled HR), trained with L1."""


@MODEL_REGISTRY.register()
class KDSRClassicSTModel(StudentMixin, GeneratorStepMixin, ClassicDegradationMixin, SRModel):
    """Classic student: L1 + KD towards the frozen teacher's IDR.

    As the authors' classic code, ``train:encoder_iter`` > 0 starts with a KD-only phase (the
    loss is the KD loss; lr = ``lr_encoder * gamma_encoder ** floor(iter / lr_decay_encoder)``);
    after it, L1 + KD with lr = ``lr_sr * gamma_sr ** floor((iter - encoder_iter) / lr_decay_sr)``.
    """

    encoder_phase = True

    def __init__(self, opt):
        if opt.get('train', {}).get('encoder_iter', 0) > 0:
            opt.setdefault('find_unused_parameters', True)  # G gets no gradient in the KD-only phase (DDP)
        super().__init__(opt)
        if self.is_train and self.encoder_iters() > 0 and self.opt['train'].get('lr_sr') is None:
            raise OptionError('train:lr_sr: after the KD-only phase (encoder_iter > 0) the student needs lr_sr '
                              '(and gamma_sr, lr_decay_sr) for its L1 + KD phase.')

    def encoder_iters(self):
        return self.opt['train'].get('encoder_iter', 0)

    def student_lr(self, current_iter):
        train_opt = self.opt['train']
        if current_iter <= self.encoder_iters():
            if 'lr_encoder' not in train_opt:
                raise OptionError('train:lr_encoder: the KD-only phase (encoder_iter > 0) needs its learning rate.')
            return train_opt['lr_encoder'] * train_opt.get('gamma_encoder', 0.1)**math.floor(
                current_iter / train_opt.get('lr_decay_encoder', float('inf')))
        return super().student_lr(current_iter - self.encoder_iters())

    def image_losses_at(self, current_iter):
        return current_iter > self.encoder_iters()
