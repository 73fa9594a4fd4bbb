"""KDSRNet teacher and student models for real-world SR (the authors' names and options)."""
import math
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from ..errors import OptionError
from .realworld import RealDegradationMixin
from .teacher import build_frozen_teacher, init_student, take_teacher_init, teacher_idr

ENCODER_KEYS = ('encoder_iter', 'lr_encoder', 'gamma_encoder', 'lr_decay_encoder')
FREEZE_KEYS = {'G': 'freeze_generator', 'encoder': 'freeze_encoder'}  # the part each option freezes
OTHER_PART = {'G': 'encoder', 'encoder': 'G'}  # what trains when a part is frozen


class GeneratorStepMixin:
    """The rest of a generator step once ``self.output`` exists: the configured pixel and
    perceptual losses (unless ``image_losses`` is False) plus ``extra`` ones, backward, step,
    log, EMA; the optional ``train:idr_probe_opt`` and ``train:idr_group_opt`` losses on the IDR
    (``probe_loss``; the latter needs ``degradation_mixture:shared_degradation``); and
    ``train:encoder_init: kaiming``, which re-initialises the encoder when a run starts (after
    ``pretrain_network_g`` is loaded; not on resume); and ``train:freeze_generator: true``, which
    trains the encoder alone (the generator ``G`` keeps the weights it was loaded with), or
    ``train:freeze_encoder: true``, which trains ``G`` alone under the encoder it was loaded with."""

    def __init__(self, opt):
        train_opt = opt.get('train') or {}
        if any(train_opt.get(key) for key in FREEZE_KEYS.values()):
            opt.setdefault('find_unused_parameters', True)  # the frozen part gets no gradient (DDP)
        super().__init__(opt)

    def _frozen_part(self):
        """``None``, or the part of the net that ``train:freeze_generator`` / ``freeze_encoder`` freezes."""
        frozen = []
        for part, key in FREEZE_KEYS.items():
            flag = self.opt['train'].get(key, False)
            if not isinstance(flag, bool):
                raise OptionError(f'train:{key}: {flag!r} must be true or false.')
            frozen += [part] if flag else []
        if len(frozen) == 2:
            raise OptionError('train:freeze_generator and train:freeze_encoder: both true leaves nothing to train; '
                              'set one of them to false.')
        if frozen and self.opt.get('network_d') is not None:
            raise OptionError(f'train:{FREEZE_KEYS[frozen[0]]}: not supported with a discriminator (network_d); '
                              'remove it.')
        return frozen[0] if frozen else None

    def setup_optimizers(self):
        """As SRModel's, but with ``train:freeze_generator`` (``freeze_encoder``) only the encoder's
        (the generator's) weights are optimised."""
        frozen = self._frozen_part()
        if frozen is None:
            return super().setup_optimizers()
        net = self.get_bare_model(self.net_g)
        getattr(net, frozen).requires_grad_(False)
        trained = getattr(net, OTHER_PART[frozen])
        optim_opt = dict(self.opt['train']['optim_g'])
        self.optimizer_g = self.get_optimizer(optim_opt.pop('type'), list(trained.parameters()), **optim_opt)
        self.optimizers.append(self.optimizer_g)
        get_root_logger().info(f'train:{FREEZE_KEYS[frozen]}: {frozen} is frozen; only {OTHER_PART[frozen]} '
                               f'({sum(p.numel() for p in trained.parameters())} parameters) trains.')

    def init_training_settings(self):
        super().init_training_settings()
        train_opt = self.opt['train']
        probe_opt = train_opt.get('idr_probe_opt')
        self.cri_probe = build_loss(probe_opt).to(self.device) if probe_opt else None
        group_opt = train_opt.get('idr_group_opt')
        self.cri_group = build_loss(group_opt).to(self.device) if group_opt else None
        self.idr_group = (self.opt.get('degradation_mixture') or {}).get('shared_degradation', 1)
        if self.cri_group is not None and self.idr_group == 1:
            raise OptionError('train:idr_group_opt: needs crops that share a degradation; add '
                              'degradation_mixture:shared_degradation: 4.')
        init = train_opt.get('encoder_init')
        if init not in (None, 'kaiming'):
            raise OptionError(f"train:encoder_init: {init!r} is not supported; use kaiming, or ~ to keep the weights.")
        if init and not self.opt['path'].get('resume_state'):  # a resumed run keeps what it learnt
            self.get_bare_model(self.net_g).encoder.kaiming_init()
            if hasattr(self, 'net_g_ema'):
                self.model_ema(0)  # the EMA copy starts from the same encoder
            get_root_logger().info('train:encoder_init: the encoder of net_g re-initialised (kaiming).')

    def probe_loss(self, idr_prime):
        """``{'l_probe': ..., 'l_group': ...}`` for the net's IDR of this batch, as far as
        ``idr_probe_opt`` and ``idr_group_opt`` are set."""
        losses = {}
        if self.cri_probe is not None:
            losses['l_probe'] = self.cri_probe(idr_prime, self.lq, self.gt)
        if self.cri_group is not None:
            losses['l_group'] = self.cri_group(idr_prime, self.idr_group)
        return losses

    def image_losses(self, pix_target, percep_target, prefix='l_', **extra):
        """The configured losses of ``self.output``: pixel (``{prefix}pix``), then ``extra``, then
        perceptual and style (``{prefix}percep``, ``{prefix}style``), in that order."""
        loss_dict = OrderedDict()
        if self.cri_pix:
            loss_dict[f'{prefix}pix'] = self.cri_pix(self.output, pix_target)
        loss_dict.update(extra)
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, percep_target)
            for name, value in (('percep', l_percep), ('style', l_style)):
                if value is not None:
                    loss_dict[f'{prefix}{name}'] = value
        return loss_dict

    def step_generator(self, image_losses=True, **extra):
        loss_dict = self.image_losses(self.gt, self.gt, **extra) if image_losses else OrderedDict(extra)
        sum(loss_dict.values()).backward()
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)


class TeacherMixin:
    """A teacher: KD-IDE_T sees LQ and GT, also at validation (oracle); trained with the
    image losses (and the optional IDR probe)."""

    def __init__(self, opt):
        super().__init__(opt)
        self.init_degradation()

    def _forward(self, net):
        if getattr(self, 'gt', None) is None:
            raise OptionError(f'{type(self).__name__} needs GT images at validation/test time (the teacher '
                              'encoder sees HR); give the dataset a dataroot_gt.')
        return net(self.lq, self.gt)

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        self.output, idr_prime = self.forward_amp(self._forward, self.net_g)
        self.step_generator(**self.probe_loss(idr_prime))

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.output = self._forward(net)
        net.train(was_training)


@MODEL_REGISTRY.register()
class KDSRNetTAModel(TeacherMixin, GeneratorStepMixin, RealDegradationMixin, SRModel):
    """Teacher KD-IDE_T + KDSR generator, trained with L1 (+ optional perceptual) on LQ
    synthesised on the fly from GT with the Real-ESRGAN degradation."""


class StudentMixin:
    """A student: frozen teacher, student initialised from the teacher, KD loss (and the optional
    ``train:kd_relation_opt``, relational KD over the batch), authors' lr keys.

    ``encoder_phase``: whether the ``encoder_iter`` / ``lr_encoder`` keys mean a KD-only first
    phase (the authors' classic student) or are accepted and unused (their KDSR-GAN code)."""

    encoder_phase = False

    def __init__(self, opt):
        teacher_init = take_teacher_init(opt)
        super().__init__(opt)
        self.init_degradation()
        self.setup_student(teacher_init)

    def setup_student(self, teacher_init):
        student_scale = self.get_bare_model(self.net_g).scale
        if self.is_train:
            self.net_TA = build_frozen_teacher(self.opt, self.device, student_scale)
            train_opt = self.opt['train']
            if train_opt.get('kd_opt') is None:
                raise OptionError('train:kd_opt: a student is trained with the KD loss; add kd_opt (type: KDLoss).')
            self.cri_kd = build_loss(train_opt['kd_opt']).to(self.device)
            relation_opt = train_opt.get('kd_relation_opt')
            self.cri_relation = build_loss(relation_opt).to(self.device) if relation_opt else None
            unused = [k for k in ENCODER_KEYS if k in train_opt]
            if unused and not self.encoder_phase:
                get_root_logger().info(f'{", ".join(unused)}: accepted and unused, as in the authors\' KDSR-GAN code '
                                       '(no encoder-only phase).')
        if teacher_init is not None:
            init_student(self, teacher_init)

    def student_lr(self, current_iter):
        """The authors' manual schedule lr_sr * gamma_sr ** floor(iter / lr_decay_sr), or None."""
        train_opt = self.opt['train']
        if train_opt.get('lr_sr') is None:
            return None
        return train_opt['lr_sr'] * train_opt.get('gamma_sr', 0.5)**math.floor(
            current_iter / train_opt.get('lr_decay_sr', float('inf')))

    def apply_student_lr(self, current_iter):
        lr = self.student_lr(current_iter)
        if lr is not None:
            for group in self.optimizer_g.param_groups:
                group['lr'] = lr

    def kd_losses(self, t_fea, s_fea):
        """``{'l_kd': ...}``, and ``'l_kd_rel'`` with ``train:kd_relation_opt``."""
        losses = {'l_kd': self.cri_kd(t_fea, s_fea)}
        if self.cri_relation is not None:
            losses['l_kd_rel'] = self.cri_relation(t_fea, s_fea)
        return losses

    def image_losses_at(self, current_iter):
        """Whether this iteration's loss includes the image losses (not in a KD-only phase)."""
        return True

    def optimize_parameters(self, current_iter):
        """One L1 + KD step (plus the optional relational KD, IDR probe and group losses) of the student."""
        self.apply_student_lr(current_iter)
        t_fea = self.forward_amp(teacher_idr, self.net_TA, self.lq, self.gt)
        self.optimizer_g.zero_grad()
        self.output, s_fea = self.forward_amp(self.net_g, self.lq)
        self.step_generator(image_losses=self.image_losses_at(current_iter), **self.kd_losses(t_fea, s_fea),
                            **self.probe_loss(s_fea))


@MODEL_REGISTRY.register()
class KDSRNetSTModel(StudentMixin, GeneratorStepMixin, RealDegradationMixin, SRModel):
    """Student KD-IDE_S + KDSR generator: L1 + KD towards the frozen teacher's IDR."""
