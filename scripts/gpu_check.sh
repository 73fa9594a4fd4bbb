#!/usr/bin/env bash
# GPU readiness in one command (issue G 6): on a machine with one NVIDIA GPU it runs within
# about 8 minutes and writes its log and figures under $OUT (default: runs/gpu_check):
#   1. the CUDA tests (tests/test_cuda.py, marked `cuda`);
#   2. the tiny training stages on CUDA, and the tiny teacher as 1-process DDP with nccl;
#   3. kdsr-upscale fp16 against fp32 on the sample photos (max difference, seconds);
#   4. python benchmarks/report.py --quick --device cuda (into $OUT/BENCHMARKS_cuda.md).
# Without CUDA every step says so and the script exits 0. GPU_CHECK_DEVICE=cpu rehearses steps
# 1-3 on the CPU instead (the script's own mechanics; step 4 is left out there).
# Needs the package installed in the Python it finds ($PYTHON, else .venv/bin/python, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
DEVICE=${GPU_CHECK_DEVICE:-cuda}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
BIN=$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")
LOG="$OUT/gpu_check.log"
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }
step() { say "== $1"; shift; local t0=$SECONDS; "$@" >> "$LOG" 2>&1; local rc=$?; say "   exit $rc, $((SECONDS - t0)) s"; return $rc; }

say "gpu_check: $(date -u +%FT%TZ), $("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)')"
if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  say "gpu_check: no CUDA device here: every step skipped (rehearsal)."
  step "CUDA tests (expect skips)" "$PY" -m pytest -q -m cuda tests/test_cuda.py -rs
  exit 0
fi
if [ "$DEVICE" = cuda ]; then
  "$PY" -c 'import torch; print("device:", torch.cuda.get_device_name(0))' | tee -a "$LOG"
  nvidia-smi >> "$LOG" 2>&1 || true
  export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
else
  say "gpu_check: rehearsal on the CPU (GPU_CHECK_DEVICE=cpu)"
  export CUDA_VISIBLE_DEVICES=''
fi
failed=0

[ "$DEVICE" = cuda ] && { step "1. CUDA tests" "$PY" -m pytest -q -m cuda tests/test_cuda.py -rs || failed=1; }

work=$(mktemp -d)
"$BIN/kdsr-prepare" --hr datasets/samples/train --out "$work/data" --crop_size 200 --step 200 >> "$LOG" 2>&1
tiny() {  # tiny options on the GPU, with the prepared data
  sed -e "s#datasets/samples/meta_info_train.txt#$work/data/meta_info.txt#; s#datasets/samples/train#$work/data/sub#" \
      -e "s#datasets/samples#$REPO/datasets/samples#g; s#experiments/tiny_#$work/experiments/tiny_#g" \
      "$REPO/options/tiny/$1" > "$work/$1"
  echo "$work/$1"
}
(cd "$work" && step "2a. tiny teacher on $DEVICE" "$BIN/kdsr-train" -opt "$(tiny train_kdsrnet_x4TA_tiny.yml)") || failed=1
(cd "$work" && step "2b. tiny student on $DEVICE" "$BIN/kdsr-train" -opt "$(tiny train_kdsrnet_x4ST_tiny.yml)") || failed=1
ddp=$(tiny train_kdsrnet_x4TA_tiny.yml); sed -i 's/^name: .*/name: tiny_ddp_nccl/' "$ddp"
(cd "$work" && step "2c. tiny teacher, 1-process DDP (nccl on CUDA, gloo on CPU)" "$BIN/torchrun" --standalone \
   --nproc_per_node=1 -m kdsr_model.train -opt "$ddp" --launcher pytorch) || failed=1
grep -E "l_pix|psnr" "$LOG" | tail -4 >> "$OUT/training_tail.txt"

step "3. kdsr-upscale fp16 vs fp32" "$PY" - "$OUT" "$DEVICE" <<'PY' || failed=1
import glob, sys, time
import cv2, numpy as np, torch
from kdsr_model.upscaler import KDSRUpscaler
out, device = sys.argv[1:3]
sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
rows = []
for half in (False, True):  # on the CPU, 'half' is bf16 autocast
    up = KDSRUpscaler(device=device, half=half, bf16=half)
    imgs = [cv2.imread(p) for p in sorted(glob.glob('datasets/samples/train/*.png'))]
    up.enhance(imgs[0]); sync(); t0 = time.perf_counter()
    res = [up.enhance(i)[0] for i in imgs]; sync()
    rows.append((half, time.perf_counter() - t0, res))
diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(rows[0][2], rows[1][2]))
line = f'{device}: fp32 {rows[0][1]:.3f} s, {"fp16" if device == "cuda" else "bf16"} {rows[1][1]:.3f} s for {len(rows[0][2])} images 400x400 -> 1600x1600; max diff {diff} levels'
print(line); open(f'{out}/upscale_fp16_vs_fp32.txt', 'w').write(line + '\n')
PY
if [ "$DEVICE" = cuda ]; then
  step "4. benchmarks/report.py --quick --device cuda" "$PY" benchmarks/report.py --quick --device cuda \
    --out "$OUT/BENCHMARKS_cuda.md" || failed=1
fi
rm -rf "$work"
say "gpu_check: done, $([ $failed = 0 ] && echo 'all steps passed' || echo 'some steps failed (see above)'); log: $LOG"
exit $failed
