"""engine.train: exact resume, DDP on CPU, schedules, non-finite losses and out-of-memory advice."""

import csv

import pytest
import torch
from conftest import TINY, assert_user_error


def _nan_loss_at(monkeypatch, iterations):
    """Make the detection loss NaN at the given (0-based) training calls."""
    import metaanchor.families.retinanet.detector as det_mod

    real, calls = det_mod.detection_loss, {"n": 0}

    def loss(*a, **k):
        out = real(*a, **k)
        if calls["n"] in iterations:
            out = {name: v * float("nan") for name, v in out.items()}
        calls["n"] += 1
        return out

    monkeypatch.setattr(det_mod, "detection_loss", loss)


def test_non_finite_loss_stops_naming_the_iteration_and_keeps_the_checkpoint(capsys, monkeypatch, dataset, tmp_path):
    _nan_loss_at(monkeypatch, {3})
    run = tmp_path / "run"
    line = assert_user_error(capsys, ["train", "--no-progress", "--out", run, f"data.train={dataset}", *TINY,
                                      "solver.max_iter=5", "checkpoint.period=2"],
                             "non-finite loss or gradient at iteration 3", f"last good checkpoint: {run / 'last.pt'}")
    assert "solver.nonfinite=skip" in line
    good = torch.load(run / "last.pt", weights_only=False)
    assert good["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())


def test_non_finite_loss_skip_mode_counts_skipped_steps(monkeypatch, dataset, tmp_path):
    from metaanchor.config import load_config
    from metaanchor.engine.train import train

    _nan_loss_at(monkeypatch, {1, 2})
    cfg = load_config(None, [f"data.train={dataset}", *TINY, "solver.max_iter=4", "solver.nonfinite=skip"])
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["skipped_steps"] == 2 and summary["iterations"] == 4
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert last["skipped"] == 2
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    with (tmp_path / "run" / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["skipped"] == "2"


def test_out_of_memory_in_a_training_step_becomes_advice(monkeypatch, dataset, tmp_path):
    from metaanchor.config import load_config
    from metaanchor.engine import train as train_mod
    from metaanchor.errors import OutOfMemory

    def oom(self, it, images, targets):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_mod.Trainer, "_step", oom)
    cfg = load_config(None, [f"data.train={dataset}", *TINY, "solver.max_iter=2"])
    with pytest.raises(OutOfMemory, match="at training iteration 0 with batch size 2; try solver.batch_size=1"):
        train_mod.train(cfg, tmp_path / "run", progress=False)
