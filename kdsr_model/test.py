"""``kdsr-test -opt X.yml``: BasicSR's own test pipeline with the KDSR classes registered.

Writes ``results/`` under the current directory.
"""
import os
import sys

import kdsr_model  # noqa: F401  (registers networks, models, losses)
from basicsr.test import test_pipeline

from .cli import run_pipeline
from .errors import tool


@tool('kdsr-test')
def main(argv=None):
    run_pipeline(test_pipeline, os.getcwd(), is_train=False, argv=argv)


if __name__ == '__main__':
    sys.exit(main())
