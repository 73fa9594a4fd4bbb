"""``kdsr-train -opt X.yml``: BasicSR's own train pipeline with the KDSR classes registered.

Takes every BasicSR flag (``--launcher``, ``--auto_resume``, ``--debug``, ``--force_yml``,
``--local_rank``) and writes ``experiments/`` and ``tb_logger/`` under the current directory.
"""
import os
import sys

import kdsr_model  # noqa: F401  (registers networks, models, losses)
from basicsr.train import train_pipeline

from .cli import run_pipeline
from .errors import tool


@tool('kdsr-train')
def main(argv=None):
    run_pipeline(train_pipeline, os.getcwd(), argv=argv)


if __name__ == '__main__':
    sys.exit(main())
