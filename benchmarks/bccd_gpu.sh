#!/usr/bin/env bash
# The BCCD runs of the README's "Real data: BCCD" table and reports/bccd/yolo, on one GPU machine
# (16 cores): MetaAnchor and the predefined baseline with configs/bccd.yaml, seeds 0, 1 and 2, all at the
# same time (SIGTERM at TRAIN_TIMEOUT saves last.pt; best.pt holds the best validation AP so far), beside
# `experiment yolo --quick --data data/bccd`; then each run's test-split evaluation. Needs
# data/bccd/{train,val,test} (see configs/bccd.yaml). Writes R (runs/bccd-gpu) and RESULTS (a .tgz) if set.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-}:$PWD/src"
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
R=${R:-runs/bccd-gpu}
mkdir -p $R
$PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
nvidia-smi -L 2>/dev/null
for seed in 0 1 2; do
  for head in metaanchor predefined; do
    timeout ${TRAIN_TIMEOUT:-390} $PY -m metaanchor train --config configs/bccd.yaml --out $R/$head-s$seed \
        --no-progress device=$DEVICE seed=$seed model.head=$head ${EXTRA:-} > $R/$head-s$seed.log 2>&1 &
  done
done
timeout ${YOLO_TIMEOUT:-420} $PY -m research yolo --quick --data data/bccd --seeds 2 --device $DEVICE \
    --out $R/reports > $R/yolo.log 2>&1 &
wait
for seed in 0 1 2; do
  for head in metaanchor predefined; do
    run=$R/$head-s$seed
    [ -f $run/best.pt ] && $PY -m metaanchor eval --checkpoint $run/best.pt --data data/bccd/test --device $DEVICE \
        --json-out $run/test.json --plot $run/test_pr.png > $run/test.txt 2>&1
    tail -n 3 $run.log
  done
done
tail -n 12 $R/yolo.log
if [ -n "${RESULTS:-}" ]; then
  tar czf "$RESULTS" --exclude='*.pt' --exclude='.cache' --exclude='events.out.*' $R
fi
