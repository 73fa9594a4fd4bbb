"""KDSR-GAN student: L1 + perceptual + GAN + KD, with BasicSR's UNetDiscriminatorSN."""
from collections import OrderedDict

import torch

from basicsr.models.srgan_model import SRGANModel
from basicsr.utils.registry import MODEL_REGISTRY

from ..errors import OptionError
from .kdsrnet_model import GeneratorStepMixin, StudentMixin
from .realworld import RealDegradationMixin
from .teacher import teacher_idr

USM_TARGETS = ('authors', 'realesrgan')


@MODEL_REGISTRY.register()
class KDSRGANSTModel(StudentMixin, GeneratorStepMixin, RealDegradationMixin, SRGANModel):
    """The third real-world stage: the student fine-tuned with perceptual and GAN losses.

    LQ is synthesised from the plain GT; ``gt_usm`` (USM-sharpened GT) is computed after the
    pair pool. ``train:usm_targets`` says what the ``l1_gt_usm`` / ``percep_gt_usm`` /
    ``gan_gt_usm`` flags do: ``authors`` (default, the released models): only the teacher's
    HR input follows ``l1_gt_usm``, every loss uses the plain GT; ``realesrgan``: each loss uses
    the target its flag names, as in Real-ESRGAN, and the teacher sees the L1 target.
    """

    def __init__(self, opt):
        super().__init__(opt)
        if self.is_train:
            self.usm_targets = self.opt['train'].get('usm_targets', 'authors')
            if self.usm_targets not in USM_TARGETS:
                raise OptionError(f'train:usm_targets must be one of {", ".join(USM_TARGETS)}, '
                                  f'got {self.usm_targets!r}.')

    def feed_data(self, data):
        super().feed_data(data)
        if self.is_train:  # recomputed after the pool, so it matches the GT actually trained on
            with torch.no_grad():
                self.gt_usm = self.usm_sharpener(self.gt)

    def _targets(self):
        pick = {
            flag: self.gt_usm if self.opt.get(flag, False) else self.gt
            for flag in ('l1_gt_usm', 'percep_gt_usm', 'gan_gt_usm')
        }
        if self.usm_targets == 'authors':
            return pick['l1_gt_usm'], self.gt, self.gt, self.gt
        return pick['l1_gt_usm'], pick['l1_gt_usm'], pick['percep_gt_usm'], pick['gan_gt_usm']

    def optimize_parameters(self, current_iter):
        self.apply_student_lr(current_iter)
        teacher_gt, l1_gt, percep_gt, gan_gt = self._targets()
        t_fea = self.forward_amp(teacher_idr, self.net_TA, self.lq, teacher_gt)

        # generator
        for p in self.net_d.parameters():
            p.requires_grad = False
        self.optimizer_g.zero_grad()
        self.output, s_fea = self.forward_amp(self.net_g, self.lq)
        loss_dict = OrderedDict()
        if current_iter % self.net_d_iters == 0 and current_iter > self.net_d_init_iters:
            loss_dict = self.image_losses(l1_gt, percep_gt, prefix='l_g_', **self.kd_losses(t_fea, s_fea),
                                          **self.probe_loss(s_fea))
            loss_dict['l_g_gan'] = self.cri_gan(self.net_d(self.output), True, is_disc=False)
            sum(loss_dict.values()).backward()
            self.optimizer_g.step()

        # discriminator
        for p in self.net_d.parameters():
            p.requires_grad = True
        self.optimizer_d.zero_grad()
        real_d_pred = self.net_d(gan_gt)
        l_d_real = self.cri_gan(real_d_pred, True, is_disc=True)
        l_d_real.backward()
        fake_d_pred = self.net_d(self.output.detach())
        l_d_fake = self.cri_gan(fake_d_pred, False, is_disc=True)
        l_d_fake.backward()
        self.optimizer_d.step()
        loss_dict.update(
            l_d_real=l_d_real,
            l_d_fake=l_d_fake,
            out_d_real=real_d_pred.detach().mean(),
            out_d_fake=fake_d_pred.detach().mean())

        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
