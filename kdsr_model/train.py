"""``kdsr-train -opt X.yml``: BasicSR's own train pipeline with the KDSR classes registered.

Takes every BasicSR flag (``--launcher``, ``--auto_resume``, ``--debug``, ``--force_yml``,
``--local_rank``) and writes ``experiments/`` and ``tb_logger/`` under the current directory.
"""
import os

import kdsr_model  # noqa: F401  (registers networks, models, losses)
from basicsr.train import train_pipeline

from .cli import run_pipeline


def main():
    run_pipeline('kdsr-train', train_pipeline, os.getcwd())


if __name__ == '__main__':
    main()
