"""Resuming BasicSR training on any device, with ``torch.load(..., weights_only=True)``.

BasicSR 1.4.2's ``load_resume_state`` maps the state to ``torch.cuda.current_device()`` (fails
on CPU), loads it with a full unpickler, and looks for ``--auto_resume`` states relative to the
current directory rather than the experiment's folder. The KDSR entry points use this one.
"""
import collections
import os

import torch
from basicsr.utils import scandir
from basicsr.utils.misc import check_resume

# what BasicSR's training states hold besides tensors and plain containers
torch.serialization.add_safe_globals([collections.Counter, collections.OrderedDict, collections.defaultdict])


def latest_state(training_states):
    """The ``<iter>.state`` file with the highest iteration in a folder, or None."""
    if not os.path.isdir(training_states):
        return None
    iters = [
        int(name[:-len('.state')]) for name in scandir(training_states, suffix='.state', recursive=False)
        if name[:-len('.state')].isdigit()
    ]
    return os.path.join(training_states, f'{max(iters)}.state') if iters else None


def load_resume_state(opt):
    """BasicSR's ``load_resume_state`` contract: returns the state dict or None, and updates
    ``opt`` (resume_state, pretrained network paths) as BasicSR's ``check_resume`` does."""
    if opt['auto_resume']:
        path = latest_state(opt['path']['training_states'])
        if path is not None:
            opt['path']['resume_state'] = path
    else:
        path = opt['path'].get('resume_state')
    if not path:
        return None
    device = torch.device('cuda', torch.cuda.current_device()) if opt['num_gpu'] != 0 else torch.device('cpu')
    state = torch.load(path, map_location=device, weights_only=True)
    check_resume(opt, state['iter'])
    return state


def use_device_aware_resume():
    """Make BasicSR's train pipeline use :func:`load_resume_state`."""
    import basicsr.train
    basicsr.train.load_resume_state = load_resume_state
