"""Resuming BasicSR training on any device, with ``torch.load(..., weights_only=True)``.

BasicSR 1.4.2's ``load_resume_state`` maps the state to ``torch.cuda.current_device()`` (fails
on CPU), loads it with a full unpickler, and looks for ``--auto_resume`` states relative to the
current directory rather than the experiment's folder. The KDSR entry points use this one
(installed by :func:`kdsr_model.compat.device_aware_resume`).
"""
import collections
import logging
import os
import pickle

import torch
from basicsr.utils import scandir
from basicsr.utils.misc import check_resume

from .io import first_line

# what BasicSR's training states hold besides tensors and plain containers
torch.serialization.add_safe_globals([collections.Counter, collections.OrderedDict, collections.defaultdict])


def states_newest_first(training_states):
    """The ``<iter>.state`` files of a folder, highest iteration first."""
    if not os.path.isdir(training_states):
        return []
    iters = [
        int(name[:-len('.state')]) for name in scandir(training_states, suffix='.state', recursive=False)
        if name[:-len('.state')].isdigit()
    ]
    return [os.path.join(training_states, f'{it}.state') for it in sorted(iters, reverse=True)]


def _load(path, device):
    return torch.load(path, map_location=device, weights_only=True)


def load_resume_state(opt):
    """BasicSR's ``load_resume_state`` contract: returns the state dict or None, and updates
    ``opt`` (resume_state, pretrained network paths) as BasicSR's ``check_resume`` does.

    With ``--auto_resume``, a newest state that cannot be read (cut short by a kill or a full
    disk under an older version) is named in a warning and the one before it is used."""
    device = torch.device('cuda', torch.cuda.current_device()) if opt['num_gpu'] != 0 else torch.device('cpu')
    state = None
    if opt['auto_resume']:
        for path in states_newest_first(opt['path']['training_states']):
            try:
                state = _load(path, device)
            except (EOFError, RuntimeError, pickle.UnpicklingError) as err:
                # BasicSR's logger has no handlers yet: Python's last-resort handler writes it to stderr
                logging.getLogger('basicsr').warning(
                    f'WARNING: skipping unreadable training state {path} '
                    f"({first_line(err).split('. ')[0]}); resuming from an earlier one.")
                continue
            opt['path']['resume_state'] = path
            break
    else:
        path = opt['path'].get('resume_state')
        if path:
            state = _load(path, device)
    if state is None:
        return None
    check_resume(opt, state['iter'])
    return state

