"""benchmarks/gpu.sh: its CPU dry run (tiny sizes) writes every figure BENCHMARKS.md's GPU table takes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dry_run_writes_every_figure(tmp_path):
    env = os.environ | {"DEVICE": "cpu", "OUT": str(tmp_path), "PY": sys.executable}
    run = subprocess.run(["bash", "benchmarks/gpu.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["config"]["infer_batches"] == [1, 2] and report["config"]["train_batches"] == [2]
    assert report["train_step_speedup"] > 0 and report["inference_speedup_b1"] > 0
    epoch = (tmp_path / "bccd_epoch.txt").read_text()
    assert "2 iterations per epoch" in epoch and "epoch 2" in epoch
    for name in ("ours", "tv"):
        table = (tmp_path / f"profile_{name}.txt").read_text()
        assert "aten::convolution_backward" in table
    assert "FAILED" not in run.stdout and "headline (resnet18" in run.stdout
