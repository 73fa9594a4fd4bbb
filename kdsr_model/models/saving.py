"""Checkpoints written whole: a process killed while saving never leaves a truncated
``net_g_<iter>.pth`` or ``<iter>.state`` under its final name for ``--auto_resume`` to trip on.

BasicSR's ``save_network`` and ``save_training_state`` call ``torch.save`` on the final path;
these write the same dictionaries to a hidden temporary file beside it and rename it.
"""
import os
import time

import torch
from basicsr.utils import get_root_logger

from ..errors import KDSRError
from ..io import atomic_output

RETRIES = 3


def save_atomic(obj, path, retries=RETRIES):
    """``torch.save(obj, path)`` through a temporary file and a rename, retried as BasicSR
    retries; raises :class:`KDSRError` naming the path when every try failed."""
    for attempt in range(1, retries + 1):
        try:
            with atomic_output(path) as tmp:
                torch.save(obj, tmp)
            return
        except OSError as err:
            get_root_logger().warning(f'could not save {path} (try {attempt} of {retries}): {err}')
            if attempt < retries:
                time.sleep(1)
    raise KDSRError(f'could not save {path}: free disk space or fix the folder, then resume with --auto_resume.')


class AtomicSaveMixin:
    """BasicSR's ``save_network`` / ``save_training_state`` contract, written atomically."""

    def save_network(self, net, net_label, current_iter, param_key='params'):
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(keys):
            raise ValueError(f'{len(nets)} networks but {len(keys)} param keys')
        checkpoint = {}
        for one, key in zip(nets, keys):
            state = self.get_bare_model(one).state_dict()
            checkpoint[key] = {name.removeprefix('module.'): tensor.cpu() for name, tensor in state.items()}
        label = 'latest' if current_iter == -1 else current_iter
        save_atomic(checkpoint, os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth'))

    def save_training_state(self, epoch, current_iter):
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
        }
        save_atomic(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))
