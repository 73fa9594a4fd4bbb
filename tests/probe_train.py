"""kdsr-train, plus a record of what the tests check afterwards.

    python probe_train.py DUMP_DIR -opt X.yml [BasicSR flags]

Runs kdsr-train's code path unchanged; it only keeps the model BasicSR builds, and writes
``DUMP_DIR/resumed_rank{r}.pth`` (optimiser and scheduler states right after a resume) and
``DUMP_DIR/final_rank{r}.pth`` (the bare net_g weights at the end) for every rank.
"""
import os
import sys

import torch

import kdsr_model  # noqa: F401
import basicsr.train
from kdsr_model.cli import run_pipeline

dump_dir = sys.argv.pop(1)
models = []
original_build = basicsr.train.build_model


def _rank():
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def recording_build(opt):
    model = original_build(opt)
    original_resume = model.resume_training

    def recording_resume(state):
        original_resume(state)
        torch.save({'optimizers': [o.state_dict() for o in model.optimizers],
                    'schedulers': [s.state_dict() for s in model.schedulers]},
                   os.path.join(dump_dir, f'resumed_rank{_rank()}.pth'))

    model.resume_training = recording_resume
    models.append(model)
    return model


basicsr.train.build_model = recording_build
run_pipeline(basicsr.train.train_pipeline, os.getcwd())
net = models[0].get_bare_model(models[0].net_g)
torch.save(net.state_dict(), os.path.join(dump_dir, f'final_rank{_rank()}.pth'))
