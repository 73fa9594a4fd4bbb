#!/usr/bin/env bash
# The recipe of the built-in default model (kdsr_model/weights/kdsr_default_x4.pth, card: docs/MODEL.md):
# a small KDSR (48/2/10) trained on the degradation mixture, in the stages below, then benchmarked
# on held-out photos in the clean / mild / heavy bands against bicubic.
#   bash scripts/train_default_model.sh [PHOTOS_DIR]          (default: ../shared/data/photos)
#   FROM=recipe bash scripts/train_default_model.sh ...       (only stage 7, from models/recipe/)
#   V8=1 bash scripts/train_default_model.sh ...              (then stage 8, an experiment, not shipped)
# Run from the repository root after `pip install .`; every stage resumes (--auto_resume).
#   1. teacher, L1                      options/default/train_default_v2_x4TA.yml (2400 iterations)
#   2. student from the teacher, L1+KD  options/default/train_default_v2_x4ST.yml (stopped at 2500)
#   3. student on, more clean input     options/default/train_default_v3_x4ST.yml (2750 iterations)
#   4. student on, same mixture         options/default/train_default_v4_x4ST.yml (2800 iterations)
#   5. student on, more clean input     options/default/train_default_v5_x4ST.yml (4400 iterations)
#   6. student on, stage-4 mixture, low options/default/train_default_v6_x4ST.yml (2400 iterations)
#   7a. v6 as a residual-input teacher  options/default/train_default_v7_x4TA.yml (1200 iterations, + IDR probe)
#   7b. high-pass-input student, L1+KD  options/default/train_default_v7_x4ST.yml (1600 iterations, + IDR probe)
#   (8. 7b's encoder drives 7a's G      options/default/train_default_v8_x4ST.yml (2400 iterations, G frozen;
#       V8=1 only: it trades clean for heavy input, docs/MODEL.md "Stage 8"))
#   (10. on one GPU, from 7b: scripts/train_default_gpu.sh; 11: options/default/train_default_v11*_x4ST.yml;
#       measured, not shipped: docs/MODEL.md "Stage 10")
#   (13 from 7b, 14 from 13, on 2 CPU threads: options/default/train_default_v1{3,4}_x4ST.yml; measured, not
#       shipped: docs/MODEL.md "Stage 13", "Stage 14")
#   (15 from 14 with detail crops, 16 from 15 on the photos also at 1/2 and 1/3 scale
#       (datasets/photos_train_ms_sub), 17 from 16: options/default/train_default_v1{5,6,7}_x4ST.yml;
#       measured, not shipped: docs/MODEL.md "Stage 15", "Stage 16", "Stage 17")
#   (18. v7 and v16 blended in weight space, no training: scripts/interpolate_models.py, chosen on
#       the texture selection photos of scripts/texture_select_photos.py; not shipped: docs/MODEL.md "Stage 18")
#   (19 from 17, detail crops for 9 samples in 10: options/default/train_default_v19_x4ST.yml; measured, not
#       shipped: docs/MODEL.md "Stage 19")
# Data: PHOTOS_DIR/train less the three selection photos below (training); the selection
# photos' band crops validate; PHOTOS_DIR/val and benchmarks/photos are for the final figures only.
# Time on 2 CPU threads of an AVX512 CPU: about 1 h + 1.5 h + 1.3 h + 0.8 h + 1.3 h + 0.7 h + 0.4 h + 0.5 h
# (stage 8: 0.5 h more); an AVX2-only CPU takes about twice as long.
set -euo pipefail
PHOTOS=${1:-../shared/data/photos}
FROM=${FROM:-scratch}
source "$(dirname "$0")/default_data.sh"
default_data "$PHOTOS"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
student_stage() {  # stage $1's student from stage $2's, taught by the v2 teacher; exported to runs/
  kdsr-train -opt "options/default/train_default_v$1_x4ST.yml" --auto_resume --force_yml \
    "path:pretrain_network_g=runs/default_v$2_student_x4.pth" path:pretrain_network_TA=runs/default_v2_teacher_x4.pth
  python scripts/export_model.py "experiments/default_v$1_KDSRx4ST/models/net_g_latest.pth" "runs/default_v$1_student_x4.pth"
}
if [ "$FROM" = scratch ]; then
  kdsr-train -opt options/default/train_default_v2_x4TA.yml --auto_resume
  kdsr-train -opt options/default/train_default_v2_x4ST.yml --auto_resume --force_yml train:total_iter=2500
  python scripts/export_model.py experiments/default_v2_KDSRx4TA/models/net_g_latest.pth runs/default_v2_teacher_x4.pth
  python scripts/export_model.py experiments/default_v2_KDSRx4ST/models/net_g_2500.pth runs/default_v2_student_x4.pth
  for v in 3 4 5 6; do student_stage $v $((v - 1)); done
  V6=runs/default_v6_student_x4.pth
else
  V6=models/recipe/default_v6_student_x4.pth  # the committed result of stages 1-6
fi
# stage 7a: v6 as a teacher that also sees the residual (its new input channels start at zero)
[ -f runs/default_v7_teacher_init_x4.pth ] || \
  python scripts/transplant_model.py "$V6" runs/default_v7_teacher_init_x4.pth --arch BlindSR_TA --extra-input
kdsr-train -opt options/default/train_default_v7_x4TA.yml --auto_resume
[ -f runs/default_v7_teacher_x4.pth ] || \
  python scripts/export_model.py experiments/default_v7_KDSRx4TA/models/net_g_latest.pth runs/default_v7_teacher_x4.pth
# stage 7b: the student, from that teacher (G and encoder; the high-pass channels start at zero), L1 + KD
[ -f runs/default_v7_student_init_x4.pth ] || python scripts/transplant_model.py runs/default_v7_teacher_x4.pth \
  runs/default_v7_student_init_x4.pth --arch BlindSR_ST --extra-input
kdsr-train -opt options/default/train_default_v7_x4ST.yml --auto_resume
[ -f runs/default_v7_student_x4.pth ] || \
  python scripts/export_model.py experiments/default_v7_KDSRx4ST/models/net_g_latest.pth runs/default_v7_student_x4.pth
cp runs/default_v7_student_x4.pth runs/kdsr_default_x4.pth  # the built-in model's candidate
python benchmarks/bands.py --model runs/kdsr_default_x4.pth --model kdsr_model/weights/kdsr_default_x4.pth
[ "${V8:-0}" = 1 ] || exit 0
# stage 8 (V8=1): that student's encoder learns to drive the stage-7a teacher's generator, which stays frozen
[ -f runs/default_v8_student_init_x4.pth ] || python scripts/transplant_model.py runs/default_v7_student_x4.pth \
  runs/default_v8_student_init_x4.pth --arch BlindSR_ST --extra-input --generator runs/default_v7_teacher_x4.pth
kdsr-train -opt options/default/train_default_v8_x4ST.yml --auto_resume
python scripts/export_model.py experiments/default_v8_KDSRx4ST/models/net_g_latest.pth runs/default_v8_student_x4.pth
python benchmarks/bands.py --model runs/default_v8_student_x4.pth --model kdsr_model/weights/kdsr_default_x4.pth
