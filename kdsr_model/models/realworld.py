"""What every real-world KDSR model shares: Real-ESRGAN's degradation synthesis on any device.

The synthesis is :class:`kdsr_model.data.realworld.RealWorldDegrader` (BasicSR's own
``RealESRNetModel.feed_data``, unchanged, on the model's device); this mixin adds the
training-pair pool, paired data for validation, option checks, and DDP wrapping on CPU
(gloo) and CUDA.
"""
import torch
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..data.mixture import MixtureDegrader
from ..data.realworld import RealWorldDegrader
from ..errors import OptionError
from .loading import WeightsLoadMixin
from .perceptual import local_vgg_weights
from .precision import AutocastMixin
from .saving import AtomicSaveMixin


class DeviceAwareMixin:
    """``model_to_device`` that also wraps CPU nets in DDP (BasicSR passes CUDA device_ids)."""

    def model_to_device(self, net):
        net = net.to(self.device)
        if self.opt['dist']:
            device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            net = DistributedDataParallel(
                net, device_ids=device_ids, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        elif self.opt['num_gpu'] > 1:
            net = DataParallel(net)
        return net


class SynthesisMixin(AtomicSaveMixin, WeightsLoadMixin, AutocastMixin, DeviceAwareMixin):
    """Training LQ synthesised from GT on the model's device by ``self.synthesise(data)``
    (which sets ``self.lq`` and ``self.gt``); paired data otherwise (validation, test).
    Checkpoints are saved atomically, ``path:pretrain_network_*`` read as ``.pth`` or
    ``.safetensors``; ``train:autocast`` sets the forward passes' precision."""

    def init_training_settings(self):
        self.autocast_dtype()  # a bad train:autocast fails before anything trains
        super().init_training_settings()

    def feed_data(self, data):
        if self.is_train and self.opt.get('high_order_degradation', True):
            gt_h, gt_w = data['gt'].shape[-2:]
            if min(gt_h, gt_w) < self.opt['gt_size']:
                raise OptionError(f"gt_size ({self.opt['gt_size']}) is larger than the GT patches the dataset gives "
                                  f'({gt_h}x{gt_w}); lower gt_size.')
            self.synthesise(data)
            self.lq = self.lq.contiguous()
            return
        self.lq = data['lq'].to(self.device)
        if 'gt' in data:
            self.gt = data['gt'].to(self.device)
        elif hasattr(self, 'gt'):
            del self.gt  # never pair an LQ with the GT of an earlier batch

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        was_train, self.is_train = self.is_train, False  # validation reads paired data: never synthesise
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self.is_train = was_train


class RealDegradationMixin(SynthesisMixin):
    """BasicSR's Real-ESRGAN synthesis plus the training-pair pool; with a top-level
    ``degradation_mixture`` section, the mixture of :mod:`kdsr_model.data.mixture` instead.

    Call :meth:`init_degradation` at the end of ``__init__``.
    """

    def synthesise(self, data):
        self.lq, self.gt = self.degrader(data)
        self._dequeue_and_enqueue()

    def init_training_settings(self):
        with local_vgg_weights(self.opt['train']):
            super().init_training_settings()

    def init_degradation(self):
        self.opt.setdefault('gt_usm', False)
        if self.opt.get('degradation_mixture'):
            try:
                self.degrader = MixtureDegrader(self.opt, self.device)
            except ValueError as err:
                raise OptionError(str(err)) from None
        else:
            self.degrader = RealWorldDegrader(self.opt, self.device)
        self.usm_sharpener = self.degrader.usm_sharpener
        self.queue_size = self.opt.get('queue_size', 180)

    @torch.no_grad()
    def _dequeue_and_enqueue(self):
        """Training-pair pool: more degradation diversity within a batch (as Real-ESRGAN)."""
        b = self.lq.size(0)
        if not hasattr(self, 'queue_lr'):
            if self.queue_size % b:
                raise OptionError(f'queue_size ({self.queue_size}) must be divisible by the batch size per GPU ({b}); '
                                  'change queue_size or datasets:train:batch_size_per_gpu.')
            self.queue_lr = self.lq.new_zeros((self.queue_size, ) + tuple(self.lq.shape[1:]))
            self.queue_gt = self.gt.new_zeros((self.queue_size, ) + tuple(self.gt.shape[1:]))
            self.queue_ptr = 0
        if self.queue_ptr < self.queue_size:  # filling: store the batch and train on it
            self.queue_lr[self.queue_ptr:self.queue_ptr + b] = self.lq
            self.queue_gt[self.queue_ptr:self.queue_ptr + b] = self.gt
            self.queue_ptr += b
            return
        # full: shuffle (groups that share a degradation stay together), train on the first b pairs,
        # put the new batch in their place
        group = getattr(self.degrader, 'shared', 1)
        idx = (torch.randperm(self.queue_size // group, device=self.queue_lr.device)[:, None] * group +
               torch.arange(group, device=self.queue_lr.device)).flatten()
        self.queue_lr, self.queue_gt = self.queue_lr[idx], self.queue_gt[idx]
        lq, gt = self.queue_lr[:b].clone(), self.queue_gt[:b].clone()
        self.queue_lr[:b], self.queue_gt[:b] = self.lq, self.gt
        self.lq, self.gt = lq, gt
