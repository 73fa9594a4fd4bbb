#!/usr/bin/env bash
# The recipe of the built-in default model (kdsr_model/weights/kdsr_default_x4.pth, card: docs/MODEL.md):
# a small KDSR (48/2/10) trained on the degradation mixture, in the stages below, then benchmarked
# on held-out photos in the clean / mild / heavy bands against bicubic.
#   bash scripts/train_default_model.sh [PHOTOS_DIR]          (default: ../shared/data/photos)
#   FROM=recipe bash scripts/train_default_model.sh ...       (stages 7-18, from models/recipe/default_v6_student_x4.pth)
#   FROM=blend bash scripts/train_default_model.sh ...        (stage 18 only, from the committed v7 and v16: exact)
#   V8=1 bash scripts/train_default_model.sh ...              (also stage 8, an experiment, not shipped)
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
#   13. from 7b, light input            options/default/train_default_v13_x4ST.yml (4500 iterations)
#   14. both classic branches           options/default/train_default_v14_x4ST.yml (stopped at 3200)
#   15. detail crops                    options/default/train_default_v15_x4ST.yml (stopped at 800)
#   16. photos also at 1/2 and 1/3      options/default/train_default_v16_x4ST.yml (stopped at 2400;
#       datasets/photos_train_ms_sub)
#   (17 from 16, 19 from 17: options/default/train_default_v1{7,9}_x4ST.yml; measured, not shipped:
#       docs/MODEL.md "Stage 17", "Stage 19")
#   18. the built-in model: 0.2 v7 + 0.8 v16 in weight space (scripts/interpolate_models.py), A = 0.8
#       picked on the selection photos (datasets/photos_select + scripts/texture_select_photos.py) with
#       the upscaler's colour fix: docs/MODEL.md "Stage 18"
#   (21 from v18, the KD loss weighted up (21b: on the raw IDR): options/default/train_default_v21_x4ST.yml;
#       measured, not shipped: docs/MODEL.md "Stage 21")
#   (22-24 from v18 or v7: options/default/train_default_v2{2,3}_x4ST.yml and the --force_yml changes
#       in docs/MODEL.md "Stage 22" to "Stage 24"; measured, not shipped)
# Data: PHOTOS_DIR/train less the three selection photos below (training); the selection
# photos' band crops validate; PHOTOS_DIR/val and benchmarks/photos are for the final figures only.
# Time on 2 CPU threads of an AVX512 CPU: about 1 h + 1.5 h + 1.3 h + 0.8 h + 1.3 h + 0.7 h + 0.4 h + 0.5 h
# for stages 1-7, then 1.7 h + 1.2 h + 0.3 h + 0.9 h for stages 13-16 (bf16 autocast, AMD EPYC)
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
texture_stage() {  # stage $1's student from stage $2's, stopped at iteration $3, taught by the stage-7a teacher
  kdsr-train -opt "options/default/train_default_v$1_x4ST.yml" --auto_resume --force_yml "train:total_iter=$3" \
    "path:pretrain_network_g=runs/default_v$2_student_x4.pth" path:pretrain_network_TA=runs/default_v7_teacher_x4.pth
  [ -f "runs/default_v$1_student_x4.pth" ] || python scripts/export_model.py \
    "experiments/default_v$1_KDSRx4ST/models/net_g_$3.pth" "runs/default_v$1_student_x4.pth"
}
if [ "$FROM" = blend ]; then  # stage 18 alone, from the committed v7 and v16 students: exact, seconds
  V7=models/recipe/default_v7_student_x4.pth V16=models/recipe/default_v16_student_x4.pth
else
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
  if [ "${V8:-0}" = 1 ]; then
    # stage 8 (V8=1): that student's encoder learns to drive the stage-7a teacher's generator, which stays frozen
    [ -f runs/default_v8_student_init_x4.pth ] || python scripts/transplant_model.py runs/default_v7_student_x4.pth \
      runs/default_v8_student_init_x4.pth --arch BlindSR_ST --extra-input --generator runs/default_v7_teacher_x4.pth
    kdsr-train -opt options/default/train_default_v8_x4ST.yml --auto_resume
    python scripts/export_model.py experiments/default_v8_KDSRx4ST/models/net_g_latest.pth runs/default_v8_student_x4.pth
    python benchmarks/bands.py --model runs/default_v8_student_x4.pth --model kdsr_model/weights/kdsr_default_x4.pth
  fi
  # stages 13-16 (from 7b): light input, both classic branches, detail crops, the photos at 1/2 and 1/3 scale
  texture_stage 13 7 4500
  texture_stage 14 13 3200
  texture_stage 15 14 800
  texture_stage 16 15 2400
  V7=runs/default_v7_student_x4.pth V16=runs/default_v16_student_x4.pth
fi
# stage 18: the built-in model, 0.2 v7 + 0.8 v16 in weight space (A = 0.8 picked on the selection photos)
[ -f runs/kdsr_default_x4.pth ] || python scripts/interpolate_models.py "$V7" "$V16" 0.8 runs/kdsr_default_x4.pth
python benchmarks/bands.py --model runs/kdsr_default_x4.pth --model kdsr_model/weights/kdsr_default_x4.pth
