"""``kdsr-test -opt X.yml``: BasicSR's own test pipeline with the KDSR classes registered.

Writes ``results/`` under the current directory.
"""
import os

import kdsr_model  # noqa: F401  (registers networks, models, losses)
from basicsr.test import test_pipeline

from .dist import use_device_aware_init_dist


def main():
    use_device_aware_init_dist()
    test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
