"""``kdsr-train -opt X.yml``: BasicSR's own train pipeline with the KDSR classes registered.

Takes every BasicSR flag (``--launcher``, ``--auto_resume``, ``--debug``, ``--force_yml``,
``--local_rank``) and writes ``experiments/`` and ``tb_logger/`` under the current directory.
"""
import os

import kdsr_model  # noqa: F401  (registers networks, models, losses)
from basicsr.train import train_pipeline

from .dist import use_device_aware_init_dist


def main():
    use_device_aware_init_dist()
    train_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
