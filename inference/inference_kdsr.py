"""Upscale images with KDSR: the same as the ``kdsr-upscale`` command, for users of a clone.

    python inference/inference_kdsr.py -i inputs -o results [-m model.pth] [-s 3.5] [-t 256]
"""
import sys

from kdsr_model.upscale_cli import main

if __name__ == '__main__':
    sys.exit(main())
