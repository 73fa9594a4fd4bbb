#!/usr/bin/env bash
# Stage 10 of the built-in default model on one GPU, in a fixed time budget (issue F): the v7
# student (models/recipe/default_v7_student_x4.pth) trained on with stage 7b's losses and mixture,
# 4x the batch, and a cosine whose length is set from the GPU's measured speed.
#   BUDGET_S=420 bash scripts/train_default_gpu.sh [PHOTOS_DIR]     (default: ../shared/data/photos)
#   P64=1 ...   also trains, on the same GPU at the same time, a variant with 64x64 LR patches
#   OPT=options/default/train_default_v13_x4ST.yml ...   another stage's options (stage 13, written
#               for 2 CPU threads); GPU_SCALE (below) sets stage 10's GPU batch, precision and workers
# 1. the data, as the CPU recipe makes it (scripts/default_data.sh);
# 2. a 150-iteration calibration run of each variant (all at once, as they will run), whose
#    s/iteration is read off its log between iterations 50 and 150 (scripts/training_log.py);
# 3. the runs, each with total_iter (and its cosine) = what fits in the budget left, checkpoints
#    and selection-crop validation every 500 iterations; each is stopped at the budget's end
#    whatever happens;
# 4. each run's checkpoint with the best mean PSNR over the selection crops' three bands, and its
#    last, exported to runs/<stage>_<iteration>.pth, e.g. runs/default_v10_4500.pth
#    (scripts/select_checkpoint.py; the table in runs/<name>.select.txt). Then measure on
#    held-out photos, on any machine: python benchmarks/bands.py --model runs/default_v10_<iteration>.pth
# Needs the package importable by $PY (default: python) and one CUDA device (CUDA_VISIBLE_DEVICES).
set -euo pipefail
cd "$(dirname "$0")/.."
PHOTOS=${1:-../shared/data/photos}
PY=${PY:-python}
BUDGET_S=${BUDGET_S:-420}  # from the start of this script to the end of the last training step
START=$SECONDS
source scripts/default_data.sh
default_data "$PHOTOS"
OPT=${OPT:-options/default/train_default_v10_gpu_x4ST.yml}
# stage 10's GPU scale, whatever the options file says: batch 32, fp32 (launch-bound), 6 data workers
GPU_SCALE=${GPU_SCALE-"datasets:train:batch_size_per_gpu=32 datasets:train:num_worker_per_gpu=6 train:autocast=~ queue_size=128"}
NAME=$(sed -n 's/^name: *//p' "$OPT")  # e.g. default_v10_KDSRx4ST
[ -n "$NAME" ] || { echo "train_default_gpu.sh: $OPT has no name: line" >&2; exit 1; }
declare -A EXTRA=(["$NAME"]="")
if [ "${P64:-0}" = 1 ]; then
  EXTRA[${NAME/_KDSR/p64_KDSR}]="gt_size=256 datasets:train:gt_size=256 datasets:train:batch_size_per_gpu=24 queue_size=96"
fi
[ "${REHEARSE:-0}" = 1 ] || "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "train_default_gpu.sh: no CUDA device (this recipe is for one GPU; scripts/train_default_model.sh is the CPU one)")'
CALIB=${CALIB:-150}  # calibration iterations; the speed is read between CALIB/3 and CALIB
STEP=${STEP:-500}    # total_iter is a multiple of this (checkpoints and validation every STEP)

train() {  # train NAME LOGFILE SECONDS [force_yml entries...]: one run of $OPT named NAME, stopped after SECONDS (0: never)
  local name=$1 log=$2 limit=$3; shift 3
  # shellcheck disable=SC2086
  timeout "$limit" "$PY" -m kdsr_model.train -opt "$OPT" --force_yml "name=$name" $GPU_SCALE ${EXTRA[${name#calib_}]} \
    "logger:save_checkpoint_freq=$STEP" "val:val_freq=$STEP" ${FORCE:-} "$@" > "$log" 2>&1
}
mkdir -p runs
for name in "${!EXTRA[@]}"; do  # 2. calibration, all variants at once
  rm -rf "experiments/calib_$name"
  train "calib_$name" "runs/calib_$name.log" 0 "train:total_iter=$CALIB" "train:scheduler:periods=[$CALIB]" \
    "logger:print_freq=$((CALIB / 3))" val:val_freq=100000 logger:save_checkpoint_freq=100000 &
done
wait
for name in "${!EXTRA[@]}"; do  # 3. the runs
  read -r spi val_s < <("$PY" scripts/training_log.py speed "runs/calib_$name.log" "$CALIB")
  left=$((BUDGET_S - (SECONDS - START) - 30))  # 30 s: start-up and checkpoints
  if [ "$left" -lt 60 ]; then
    echo "train_default_gpu.sh: the calibration left $left s of BUDGET_S=$BUDGET_S; raise BUDGET_S (or lower CALIB)" >&2
    exit 1
  fi
  # 1.1: the H200 runs took 480 s where 440 were planned from the calibration (checkpoints, longer-lived workers)
  total=$("$PY" -c "print(max($STEP, int($left / (1.1 * $spi + $val_s / $STEP)) // $STEP * $STEP))")
  echo "$name: $spi s/iteration with all variants at once, $val_s s a validation; $left s left: total_iter $total"
  rm -rf "experiments/calib_$name"  # an earlier experiments/$name is archived by BasicSR, not removed
  train "$name" "runs/$name.log" $((BUDGET_S - (SECONDS - START) + 30)) "train:total_iter=$total" \
    "train:scheduler:periods=[$total]" &
done
wait || true
for name in "${!EXTRA[@]}"; do  # 4. the best checkpoint by the selection crops, and the last, exported
  "$PY" scripts/select_checkpoint.py "experiments/$name" "runs/${name%_KDSRx4ST}" | tee "runs/$name.select.txt" || true
done
echo "train_default_gpu.sh: done in $((SECONDS - START)) s"
