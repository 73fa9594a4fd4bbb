"""Real-world (Real-ESRGAN second-order) degradation, on any device.

:class:`RealWorldDegrader` runs BasicSR's own synthesis (``RealESRNetModel.feed_data``:
blur, resize, Gaussian/Poisson noise, DiffJPEG, second blur/resize/noise, final sinc + JPEG,
8-bit rounding, paired crop). The training models call it on every batch; ``kdsr-degrade``
writes seeded test sets with it.
"""
import torch
from basicsr.models.realesrnet_model import RealESRNetModel
from basicsr.utils import DiffJPEG, USMSharp

# The authors' degradation settings (KDSR-GAN options, identical to Real-ESRGAN's).
DEGRADATION_DEFAULTS = dict(
    gt_usm=False, resize_prob=[0.2, 0.7, 0.1], resize_range=[0.15, 1.5], gaussian_noise_prob=0.5,
    noise_range=[1, 30], poisson_scale_range=[0.05, 3], gray_noise_prob=0.4, jpeg_range=[30, 95],
    second_blur_prob=0.8, resize_prob2=[0.3, 0.4, 0.3], resize_range2=[0.3, 1.2], gaussian_noise_prob2=0.5,
    noise_range2=[1, 25], poisson_scale_range2=[0.05, 2.5], gray_noise_prob2=0.4, jpeg_range2=[30, 95])
KERNEL_DEFAULTS = dict(
    blur_kernel_size=21, kernel_list=['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso',
                                      'plateau_aniso'], kernel_prob=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    sinc_prob=0.1, blur_sigma=[0.2, 3], betag_range=[0.5, 4], betap_range=[1, 2], blur_kernel_size2=21,
    kernel_list2=['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso'],
    kernel_prob2=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03], sinc_prob2=0.1, blur_sigma2=[0.2, 1.5],
    betag_range2=[0.5, 4], betap_range2=[1, 2], final_sinc_prob=0.8)  # yapf: disable


class ContiguousDiffJPEG(DiffJPEG):
    """BasicSR's DiffJPEG with a contiguous output: its output can be non-contiguous on current
    torch, and BasicSR's ``filter2D`` (the second blur) calls ``.view`` on it."""

    def forward(self, x, quality):
        return super().forward(x, quality).contiguous()


class RealWorldDegrader:
    """``degrader(batch) -> (lq, gt)``: a ``RealESRGANDataset`` batch (gt + kernels) -> LQ and
    the matching GT crop of ``gt_size``, on ``device``. Random choices come from Python's
    ``random``, NumPy and torch, as in BasicSR (seed them for a reproducible result).

    Args:
        opt (dict): ``scale``, ``gt_size`` and the degradation keys (defaults: the authors').
        device: Where the synthesis runs.
    """

    def __init__(self, opt, device='cpu'):
        self.opt = {**DEGRADATION_DEFAULTS, **opt}
        self.device = torch.device(device)
        self.is_train = True
        self.jpeger = ContiguousDiffJPEG(differentiable=False).to(self.device)
        self.usm_sharpener = USMSharp().to(self.device)

    def _dequeue_and_enqueue(self):
        """No pool here: the training models keep their own."""

    def __call__(self, batch):
        RealESRNetModel.feed_data(self, batch)
        return self.lq, self.gt
