"""engine.train: exact resume, DDP on CPU, schedules, non-finite losses and out-of-memory advice."""

import csv
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from conftest import TINY, assert_user_error

from metaanchor.config import load_config
from metaanchor.engine import train as train_mod
from metaanchor.engine.schedule import lr_factor


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


# Tiny training with anchor sampling and photometric augmentation on, so a resume must restore their random state.
SAMPLED_TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
                "input.size=128", "solver.batch_size=4", "solver.warmup_iters=3", "log.period=1", "device=cpu",
                "anchors.sample=true", "input.photometric=0.2"]


def tiny_cfg(train_dir, *extra):
    return load_config(None, [f"data.train={train_dir}", *SAMPLED_TINY, *extra])


def weights(path):
    return torch.load(path, weights_only=False)["model"]


@pytest.mark.slow
def test_resume_after_a_stop_equals_uninterrupted_run(synth_dirs, tmp_path, monkeypatch):
    train_dir, _ = synth_dirs
    cfg = tiny_cfg(train_dir, "solver.max_iter=14", "checkpoint.period=5")  # 12 images/epoch -> crosses epochs
    train_mod.train(cfg, tmp_path / "full", progress=False)

    real_step = train_mod.Trainer._step

    def crashing_step(self, it, images, targets):
        if it == 8:  # dies after the iteration-5 checkpoint; iterations 5..7 are lost
            raise KeyboardInterrupt
        return real_step(self, it, images, targets)

    monkeypatch.setattr(train_mod.Trainer, "_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tmp_path / "cut", progress=False)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["iteration"] == 5
    monkeypatch.setattr(train_mod.Trainer, "_step", real_step)
    train_mod.train(cfg, tmp_path / "cut", resume=True, progress=False)

    full, cut = weights(tmp_path / "full" / "last.pt"), weights(tmp_path / "cut" / "last.pt")
    assert full.keys() == cut.keys()
    for k in full:
        assert torch.equal(full[k], cut[k]), k


def test_a_resumed_run_counts_the_time_and_devices_of_its_earlier_sittings(synth_dirs, tmp_path):
    train_dir, _ = synth_dirs
    cfg = tiny_cfg(train_dir, "solver.max_iter=2")
    first = train_mod.train(cfg, tmp_path, progress=False)
    assert first["devices"] == ["cpu"]
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    assert payload["devices"] == ["cpu"] and payload["train_seconds"] > 0
    # as if the first sitting had taken 1000 s on a GPU (another machine) before this resume on the CPU
    payload.update(train_seconds=1000.0, devices=["cuda (Some GPU)"])
    torch.save(payload, tmp_path / "last.pt")
    summary = train_mod.train(cfg, tmp_path, resume=True, progress=False)
    assert summary["devices"] == ["cuda (Some GPU)", "cpu"]
    assert summary["wall_time_s"] >= 1000.0
    assert json.loads((tmp_path / "summary.json").read_text())["devices"] == ["cuda (Some GPU)", "cpu"]


def test_lr_schedule_warmup_then_decay():
    s = {"warmup_iters": 10, "max_iter": 100, "schedule": "step", "steps": [0.5, 0.8]}
    assert lr_factor(0, s) == pytest.approx(0.1)
    assert lr_factor(9, s) == 1.0 and lr_factor(49, s) == 1.0
    assert lr_factor(50, s) == pytest.approx(0.1) and lr_factor(80, s) == pytest.approx(0.01)
    s["schedule"] = "cosine"
    assert lr_factor(50, s) == pytest.approx(0.5) and lr_factor(99, s) < 0.01


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _same_box_dataset(synth_train, out):
    """The synthetic images, each with one box at the same place (class varies): every image has the same number
    of positive anchors, so the loss normalisation (per process: positives of its own images) equals the
    single-process one, and DDP's gradient mean equals the single-process gradient."""
    data = json.loads((synth_train / "annotations.json").read_text())
    data["annotations"] = [{"id": i + 1, "image_id": im["id"], "category_id": data["categories"][i % 3]["id"],
                            "bbox": [20.0, 30.0, 50.0, 40.0], "area": 2000.0, "iscrowd": 0}
                           for i, im in enumerate(data["images"])]
    out.mkdir()
    (out / "annotations.json").write_text(json.dumps(data))
    (out / "images").symlink_to(synth_train / "images")
    return out


def _params(state: dict) -> torch.Tensor:
    return torch.cat([v.flatten().double() for k, v in state.items() if v.is_floating_point()
                      and "running_" not in k])


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_single_process(synth_dirs, tmp_path):
    """Parameters after 3 steps of a 2-process gloo DDP run equal a single-process run on the same global batches.

    Per-process batch statistics must not matter: ResNet-18 with frozen BatchNorm (the tiny backbone's BN always
    trains), GroupNorm in the head, no augmentation, every image with the same number of positive anchors. At
    lr 0.02 the parameters move far more than the tolerance, so a missing gradient all-reduce (each process
    stepping on its own half batch) fails: rank 0 would then end where a single-process run on its half would."""
    data = _same_box_dataset(synth_dirs[0], tmp_path / "data")
    common = [f"data.train={data}", "model.backbone=resnet18", "model.frozen_bn=true", "model.head_norm=gn",
              "model.fpn_channels=256", "model.head_convs=1", "model.hidden_dim=8", "input.size=128",
              "solver.batch_size=4", "solver.max_iter=3", "solver.warmup_iters=1", "solver.lr=0.02",
              "solver.clip_grad=0", "anchors.sample=false", "input.photometric=0.0", "input.hflip=0.0",
              "device=cpu", "log.period=1"]
    cfg = load_config(None, common)
    initial = _params(train_mod.Trainer(cfg, tmp_path / "init", progress=False).model.state_dict())
    train_mod.train(cfg, tmp_path / "single", progress=False)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "metaanchor", "train",
                        "--no-progress", "--out", str(tmp_path / "ddp"), *common], capture_output=True, text=True,
                       env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]

    single, ddp = _params(weights(tmp_path / "single" / "last.pt")), _params(weights(tmp_path / "ddp" / "last.pt"))
    moved = (single - initial).norm()
    assert moved > 0.01 * initial.norm()  # the steps really changed the model (by ~15 % here)
    # float reduction order leaves ~1e-5 of the movement; without the all-reduce it is ~2.5x the movement
    assert (ddp - single).norm() < 1e-3 * moved, ((ddp - single).norm() / moved).item()
