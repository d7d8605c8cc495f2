#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md in one run (about 5 minutes on an H100; budget 10), from a checkout with the
# venv built (`make venv`):
#   1. metaanchor bench: ResNet-50-FPN, 800 px, inference at batch 8 and 16 and a training step at batch 8 and
#      16, float16 autocast on both sides, 5 interleaved rounds (ratios: median and min..max);
#   2. BCCD training time per epoch (configs/bccd.yaml, 2 epochs; the second one is the figure: the first
#      includes start-up, cuDNN autotuning and the data loader's workers starting);
#   3. torch.profiler: the top 15 operators by CUDA time of our training step and of torchvision's.
# Everything is printed and written to OUT (default runs/gpu-bench): bench.json, bench.txt, bccd_epoch.txt,
# profile_ours.txt, profile_tv.txt, env.txt.
#
#   OUT=$OUT bash benchmarks/gpu.sh
#   DEVICE=cpu bash benchmarks/gpu.sh --dry-run      # tiny sizes on the CPU: checks the script in ~2 minutes
#
# Environment: DEVICE (cuda), OUT, PY (.venv/bin/python), BCCD (../shared/data/bccd, a VOC root or any dataset
# with train and val splits), BENCH_TIMEOUT / TRAIN_TIMEOUT / PROFILE_TIMEOUT (seconds per part).
set -u
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-runs/gpu-bench}
PY=${PY:-.venv/bin/python}
BCCD=${BCCD:-../shared/data/bccd}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ $DRY = 1 ]; then  # tiny sizes; BCCD replaced by 16 synthetic images (2 iterations per epoch)
  BENCH=(--backbone resnet18 --size 64 --batches 1 2 --train-batches 2 --rounds 1)
  BCCD="$OUT/synth16"
  [ -f "$BCCD/annotations.json" ] || $PY -m metaanchor data synth --out "$BCCD" --images 16 > /dev/null
  TRAIN=(input.size=64 input.max_size=64 data.workers=0)
  PROFILE=(--backbone resnet18 --size 64 --batch 2 --steps 1 --warmup 1)
else
  BENCH=(--backbone resnet50 --size 800 --batches 8 16 --train-batches 8 16 --rounds 5)
  TRAIN=()
  PROFILE=(--backbone resnet50 --size 800 --batch 8)
fi
status=0
part() {  # part NAME TIMEOUT LOG LINES COMMAND...: run into LOG, print its last LINES lines, remember a failure
  local name=$1 limit=$2 log=$3 lines=$4; shift 4
  echo "== $name: $*"
  local t0=$SECONDS rc=0
  timeout "$limit" "$@" > "$log" 2>&1 || rc=$?
  grep -v '^USDT:\|DeviceProperties.cpp' "$log" | tail -n "$lines"
  [ $rc = 0 ] || { echo "== $name FAILED (exit $rc, log $log)"; status=1; }
  echo "== $name: $((SECONDS - t0)) s"
}

{ $PY -c "import torch, torchvision, metaanchor; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'metaanchor', metaanchor.__version__)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"; } | tee "$OUT/env.txt"

part bench "${BENCH_TIMEOUT:-300}" "$OUT/bench.txt" 200 $PY -m metaanchor bench --device "$DEVICE" "${BENCH[@]}" \
    --json-out "$OUT/bench.json"

rm -rf "$OUT/bccd-epochs"
[ -e "$BCCD" ] || { echo "== bccd: $BCCD not found (set BCCD=...)"; status=1; }
part bccd "${TRAIN_TIMEOUT:-150}" "$OUT/bccd-train.log" 4 $PY -m metaanchor train --config bccd \
    --out "$OUT/bccd-epochs" --exist-ok \
    --no-progress data.train="$BCCD" data.val="$BCCD" device="$DEVICE" solver.max_iter=1000 solver.epochs=2 \
    eval.period=0 log.period=1 checkpoint.period=100000 "${TRAIN[@]}"
[ -f "$OUT/bccd-epochs/metrics.csv" ] && $PY - "$OUT/bccd-epochs/metrics.csv" <<'PY' | tee "$OUT/bccd_epoch.txt"
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["loss"]]
last = int(rows[-1]["iter"])
per_epoch = last // 2
t = {int(r["iter"]): float(r["seconds"]) for r in rows}
print(f"BCCD train split, configs/bccd.yaml: {per_epoch} iterations per epoch; epoch 1 {t[per_epoch]:.1f} s "
      f"(start-up included), epoch 2 {t[last] - t[per_epoch]:.1f} s")
PY

part profile "${PROFILE_TIMEOUT:-120}" "$OUT/profile.log" 60 $PY benchmarks/profile_train_step.py \
    --device "$DEVICE" "${PROFILE[@]}" --out "$OUT"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
