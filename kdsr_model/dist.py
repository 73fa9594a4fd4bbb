"""Distributed set-up that works on CPU (gloo) as well as CUDA (nccl).

BasicSR 1.4.2's ``init_dist`` always uses nccl and divides by the GPU count; the KDSR entry
points install :func:`init_dist` in its place (:func:`kdsr_model.compat.device_aware_init_dist`).
"""
import os

import torch
import torch.distributed as dist


def init_dist(launcher, backend=None, **kwargs):
    """Initialise the default process group for ``--launcher pytorch`` (torchrun) or ``slurm``.

    ``backend`` defaults to nccl when CUDA is available and gloo otherwise.
    """
    if dist.is_initialized():
        return
    if backend is None:
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if launcher == 'slurm':
        from basicsr.utils.dist_util import _init_dist_slurm
        return _init_dist_slurm(backend, **kwargs)
    if launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    if backend == 'nccl':
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(backend=backend, **kwargs)

