"""Local VGG weights for BasicSR's PerceptualLoss: nothing is downloaded.

BasicSR's VGGFeatureExtractor reads ``experiments/pretrained_models/vgg19-dcbb9e9d.pth``
(relative to the working directory) and otherwise asks torchvision to download the weights.
Here the file comes from ``train:perceptual_opt:vgg_weights``, the ``KDSR_VGG19_WEIGHTS``
environment variable, BasicSR's path, or torch's hub cache, in that order; a missing file is
a one-line error naming the option.
"""
import contextlib
import os

import torch
from basicsr.archs import vgg_arch

from ..compat import vgg_pretrain_path
from ..errors import MissingFileError

VGG19_FILE = 'vgg19-dcbb9e9d.pth'


def _candidates(explicit):
    if explicit:
        return [explicit]
    env = os.environ.get('KDSR_VGG19_WEIGHTS')
    if env:
        return [env]
    return [vgg_arch.VGG_PRETRAIN_PATH, os.path.join(torch.hub.get_dir(), 'checkpoints', VGG19_FILE)]


@contextlib.contextmanager
def local_vgg_weights(train_opt):
    """While building the losses, point BasicSR's VGG at a local weights file (if a perceptual
    loss is configured). Removes our ``vgg_weights`` key, which BasicSR's loss does not take."""
    percep = (train_opt or {}).get('perceptual_opt')
    if not percep:
        yield
        return
    explicit = percep.pop('vgg_weights', None)
    found = next((p for p in _candidates(explicit) if os.path.isfile(p)), None)
    if found is None:
        looked = ', '.join(_candidates(explicit))
        raise MissingFileError(f'train:perceptual_opt:vgg_weights: VGG19 weights not found (looked at {looked}); '
                               f"set it to a local copy of torchvision's {VGG19_FILE}.")
    with vgg_pretrain_path(found):
        yield
