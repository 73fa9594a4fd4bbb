#!/usr/bin/env bash
# The v2 recipe of the built-in model (issue F; not shipped yet): a small KDSR trained on the
# degradation mixture (options/default/train_default_v2_x4{TA,ST}.yml), then benchmarked on
# held-out photos in the clean / mild / heavy bands.
#   bash scripts/train_default_v2.sh [PHOTOS_DIR]      (default: ../shared/data/photos)
# Run from the repository root after `pip install .`; resumable (kdsr-train --auto_resume).
# Data: PHOTOS_DIR/train less the three selection photos below (training); the selection
# photos' band crops validate; PHOTOS_DIR/val and benchmarks/photos are for the final figure only.
set -euo pipefail
PHOTOS=${1:-../shared/data/photos}
SELECT="Bridge_by_Sander_Klootwijk.png LadyBird.png Wine_by_Jakkub_Mede.png"
if [ ! -d datasets/photos_train_sub ]; then
  mkdir -p datasets/photos_train datasets/photos_select
  for f in "$PHOTOS"/train/*; do
    name=$(basename "$f")
    case " $SELECT " in *" $name "*) dest=datasets/photos_select ;; *) dest=datasets/photos_train ;; esac
    ln -sf "$(cd "$(dirname "$f")" && pwd)/$name" "$dest/$name"
  done
  kdsr-prepare --hr datasets/photos_train --out datasets/photos_train_sub
fi
[ -d datasets/photos_select_bands ] || \
  kdsr-testset --hr datasets/photos_select --out datasets/photos_select_bands --protocol bands --crop 384
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
kdsr-train -opt options/default/train_default_v2_x4TA.yml --auto_resume
kdsr-train -opt options/default/train_default_v2_x4ST.yml --auto_resume
python scripts/export_model.py experiments/default_v2_KDSRx4ST/models/net_g_latest.pth runs/kdsr_default_v2_x4.pth
python benchmarks/bands.py --model runs/kdsr_default_v2_x4.pth --model kdsr_model/weights/kdsr_default_x4.pth
