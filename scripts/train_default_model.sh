#!/usr/bin/env bash
# The recipe of the built-in default model (kdsr_model/weights/kdsr_default_x4.pth).
#   bash scripts/train_default_model.sh [PHOTOS_DIR]      (default: ../shared/data/photos)
# Run from the repository root after `pip install .`. CPU is enough: on 2 cores the teacher (1500
# iterations) took about 20 min and the student (3000 iterations, 1 thread) about an hour.
set -euo pipefail
PHOTOS=${1:-../shared/data/photos}
[ -d datasets/photos_sub ] || kdsr-prepare --hr "$PHOTOS/train" --out datasets/photos_sub
[ -d datasets/photos_val_rw ] || kdsr-degrade --hr "$PHOTOS/val" --out datasets/photos_val_rw --crops 2 --seed 0
kdsr-train -opt options/default/train_default_x4TA.yml
kdsr-train -opt options/default/train_default_x4ST.yml
python scripts/export_model.py experiments/default_KDSRx4ST/models/net_g_latest.pth kdsr_model/weights/kdsr_default_x4.pth
python benchmarks/default_model.py                     # PSNR-Y vs bicubic on the val photos, CPU speed
