#!/usr/bin/env bash
# The real-data suite's runs (`python -m research anchor-configs,search --scale bccd --data data/bccd`, 3 seeds: 48
# runs of configs/bccd.yaml, about 31 min each on 2 CPU cores) on one GPU machine: JOBS runs at a time for
# at most TRAIN_SECONDS (default TRAIN_MINUTES x 60; a run cut short keeps nothing there), then the finished
# runs evaluated as their reports will, and the records (summary, validation curve, evaluations; no weights)
# packed into OUT/records.tgz (a device call returns at most 8 files). Unpack it here with
# `tar xzf records.tgz -C reports` and commit reports/records: a later sitting, on any machine, skips those
# runs, and once every run is in the same command without --jobs writes the reports from the records into
# reports/bccd-suite/ (beside the synthetic ones). A device with no pycocotools needs its wheel carried (see
# /work/.library/device/README.md).
# Needs data/bccd/{train,val,test} (see configs/bccd.yaml; carry it to the device). Usage:
#   OUT=$OUT TRAIN_SECONDS=400 JOBS=6 bash benchmarks/bccd_suite_gpu.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-}:$PWD/src"
PY=${PY:-python3}
OUT=${OUT:-runs/bccd-suite}
ARGS="anchor-configs,search --scale bccd --data data/bccd --seeds 3 --device ${DEVICE:-cuda}"
mkdir -p "$OUT"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
nvidia-smi -L 2>/dev/null
timeout -s INT "${TRAIN_SECONDS:-$(( ${TRAIN_MINUTES:-7} * 60 ))}" $PY -m research $ARGS --jobs "${JOBS:-8}" \
    --threads 2 > "$OUT/train.log" 2>&1
sleep 5  # the workers save last.pt on SIGINT
tar czf "$OUT/records.tgz" -C reports records  # again below; this one survives a device limit hit during eval
timeout "${EVAL_SECONDS:-120}" $PY -m research $ARGS --evaluate-trained > "$OUT/eval.log" 2>&1
$PY -m research $ARGS --status > "$OUT/status.txt" 2>&1
tar czf "$OUT/records.tgz" -C reports records
tail -n 3 "$OUT/status.txt"
