"""KDSR for BasicSR: importing this package registers the KDSR architectures, models and losses.

Inside this package, import from ``kdsr_arch``'s submodules (``kdsr_arch.checkpoint``...),
not from the ``kdsr_arch`` namespace: the start-up hook may import this package while
``kdsr_arch/__init__`` is still running.
"""
import kdsr_arch  # noqa: F401  (networks; also the torchvision shim and basicsr)

from . import losses, models  # noqa: F401  (registers KDLoss, IDRProbeLoss and the KDSR models)
from .compat import yaml_floats_with_exponents

yaml_floats_with_exponents()  # BasicSR's options loader reads lr: 2e-4 as a number

# The public API lives in submodules (imported on use, so that ``import kdsr_model`` stays
# light): kdsr_model.upscaler.KDSRUpscaler, kdsr_model.evaluate.evaluate,
# kdsr_model.video.upscale_video, kdsr_model.spandrel_support, kdsr_model.models.*,
# kdsr_model.losses.{KDLoss, IDRProbeLoss}, kdsr_model.data.{mixture, bands, realworld}.
__all__ = ['losses', 'models']
