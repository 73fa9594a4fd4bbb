"""``kdsr-test -opt X.yml``: BasicSR's own test pipeline with the KDSR classes registered.

Writes ``results/`` under the current directory.
"""
import os

import kdsr_model  # noqa: F401  (registers networks, models, losses)
from basicsr.test import test_pipeline

from .cli import run_pipeline


def main():
    run_pipeline('kdsr-test', test_pipeline, os.getcwd(), is_train=False)


if __name__ == '__main__':
    main()
