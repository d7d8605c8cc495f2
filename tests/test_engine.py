"""Training engine: exact resume, DDP on CPU, schedules, anchor sampling."""

import csv
import os
import subprocess
import sys

import pytest
import torch

from metaanchor.anchors import AnchorSet
from metaanchor.config import load_config
from metaanchor.engine import train as train_mod
from metaanchor.engine.train import lr_factor, sample_anchor_set

TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
        "input.size=128", "solver.batch_size=4", "solver.warmup_iters=3", "log.period=1", "device=cpu",
        "anchors.sample=true", "input.photometric=0.2"]


def tiny_cfg(train_dir, *extra):
    return load_config(None, [f"data.train={train_dir}", *TINY, *extra])


def weights(path):
    return torch.load(path, weights_only=False)["model"]


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


def test_lr_schedule_warmup_then_decay():
    s = {"warmup_iters": 10, "max_iter": 100, "schedule": "step", "steps": [0.5, 0.8]}
    assert lr_factor(0, s) == pytest.approx(0.1)
    assert lr_factor(9, s) == 1.0 and lr_factor(49, s) == 1.0
    assert lr_factor(50, s) == pytest.approx(0.1) and lr_factor(80, s) == pytest.approx(0.01)
    s["schedule"] = "cosine"
    assert lr_factor(50, s) == pytest.approx(0.5) and lr_factor(99, s) < 0.01


def test_sampled_anchor_sets_stay_in_the_jitter_range_and_are_repeatable():
    base = AnchorSet.parse("3x3")
    a = sample_anchor_set(base, seed=0, iteration=5, scale_jitter=0.5, ratio_jitter=0.5)
    assert a == sample_anchor_set(base, seed=0, iteration=5, scale_jitter=0.5, ratio_jitter=0.5)
    assert a != sample_anchor_set(base, seed=0, iteration=6, scale_jitter=0.5, ratio_jitter=0.5)
    for (h0, w0), (h, w) in zip(base.shapes, a.shapes):
        size_change = abs(torch.log2(torch.tensor(h * w / (h0 * w0))) / 2)
        ratio_change = abs(torch.log2(torch.tensor((h / w) / (h0 / w0))))
        assert size_change <= 0.5 + 1e-6 and ratio_change <= 0.5 + 1e-6


def test_two_process_gloo_ddp_matches_single_process(synth_dirs, tmp_path):
    train_dir, _ = synth_dirs
    common = [f"data.train={train_dir}", *TINY, "solver.max_iter=4", "solver.lr=0.001", "anchors.sample=false",
              "input.photometric=0.0", "input.hflip=0.0"]
    train_mod.train(load_config(None, common), tmp_path / "single", progress=False)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", "29533", "-m", "metaanchor", "train", "--no-progress",
                        "--out", str(tmp_path / "ddp"), *common], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]

    def losses(run):
        rows = csv.DictReader((tmp_path / run / "metrics.csv").open())
        return [float(r["loss"]) for r in rows if r["loss"]]

    single, ddp = losses("single"), losses("ddp")
    assert len(single) == len(ddp) == 4
    # same images per step; per-process BatchNorm statistics and loss normalisation differ slightly
    for a, b in zip(single, ddp):
        assert b == pytest.approx(a, rel=0.1)
