"""EMA of weights (solver.ema) and early stopping on validation AP (solver.early_stop)."""

import math

import pytest
import torch
from torch import nn

from metaanchor.config import load_config
from metaanchor.engine import train as train_mod
from metaanchor.engine.ema import ModelEMA
from metaanchor.errors import ConfigError
from metaanchor.families import load_detector

TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
        "input.size=64", "solver.batch_size=2", "solver.warmup_iters=2", "log.period=1", "device=cpu"]


def test_ema_weights_equal_a_hand_computed_average_of_parameters_and_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = ModelEMA(model, decay=0.9, tau=0)  # tau 0: no warm-up, d = 0.9 every update
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(3):
        model.train()
        model(torch.randn(8, 3) + step)  # moves BatchNorm's running statistics
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5 * (step + 1))
        ema.update(model)
        for k, v in model.state_dict().items():
            expected[k] = v.clone() if not v.is_floating_point() else 0.9 * expected[k] + 0.1 * v
    got = ema.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-6, msg=k)
    assert int(got["1.num_batches_tracked"]) == 3  # integer buffers are copied, not averaged
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_warm_up_decay_follows_the_ultralytics_formula():
    ema = ModelEMA(nn.Linear(1, 1), decay=0.9998, tau=2000)
    assert ema.decay_at(1) == pytest.approx(0.9998 * (1 - math.exp(-1 / 2000)))
    assert ema.decay_at(40000) == pytest.approx(0.9998, abs=1e-8)  # after 20 tau: the full decay


def _cfg(train_dir, val_dir=None, *extra):
    return load_config(None, [f"data.train={train_dir}", *([f"data.val={val_dir}"] if val_dir else []), *TINY,
                              *extra])


def test_resume_with_ema_equals_uninterrupted_run_and_load_detector_uses_ema(synth_dirs, tmp_path, monkeypatch):
    train_dir, _ = synth_dirs
    cfg = _cfg(train_dir, None, "solver.max_iter=6", "checkpoint.period=3", "solver.ema=0.9", "solver.ema_tau=2")
    train_mod.train(cfg, tmp_path / "full", progress=False)
    real_step = train_mod.Trainer._step

    def crashing_step(self, it, images, targets):
        if it == 4:
            raise KeyboardInterrupt
        return real_step(self, it, images, targets)

    monkeypatch.setattr(train_mod.Trainer, "_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(train_mod.Trainer, "_step", real_step)
    train_mod.train(cfg, tmp_path / "cut", resume=True, progress=False)

    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert full["weights"] == cut["weights"] == "ema" and full["ema_updates"] == cut["ema_updates"] == 6
    for key in ("model", "train_model"):  # EMA weights and trained weights both continue exactly
        for k in full[key]:
            assert torch.equal(full[key][k], cut[key][k]), (key, k)
    assert any(not torch.equal(full["model"][k], full["train_model"][k]) for k in full["model"])
    loaded = load_detector(tmp_path / "full" / "last.pt").state_dict()
    for k, v in full["model"].items():  # inference gets the EMA weights
        assert torch.equal(loaded[k], v), k


def _fake_evaluate(aps):
    """An evaluate() that returns the next AP of ``aps`` (the same for every metric)."""
    from metaanchor.engine.evaluate import METRIC_KEYS

    seq = iter(aps)

    def evaluate(model, dataset, anchors=None, batch_size=8, progress=True, skipped=None, results=None):
        ap = next(seq)
        return dict.fromkeys(METRIC_KEYS, ap) | {"per_class": {"a": ap}, "summary": "",
                                                  "per_class_table": [{"class": "a", "AP": ap, "AP50": ap, "gt": 1}],
                                                  "pr50": None}
    return evaluate


def test_early_stop_after_patience_evaluations_without_a_better_ap(synth_dirs, tmp_path, monkeypatch, capsys):
    train_dir, val_dir = synth_dirs
    # evaluations at iterations 1, 2, 3, 4: best AP at 2, then two without improvement -> stop at 4
    monkeypatch.setattr(train_mod, "evaluate", _fake_evaluate([0.1, 0.3, 0.2, 0.25, 0.05]))
    cfg = _cfg(train_dir, val_dir, "solver.max_iter=20", "eval.period=1", "solver.early_stop=2",
               "checkpoint.period=100")
    summary = train_mod.train(cfg, tmp_path / "run", progress=False)
    assert summary["iterations"] == 4 and summary["early_stopped"]
    assert summary["best_iteration"] == 2 and summary["best_ap"] == 0.3
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["iteration"] == 4
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["iteration"] == 2
    assert "early stop at iteration 4: no better validation AP in 2 evaluations; best AP 0.3000 at iteration 2" \
        in capsys.readouterr().out
    assert (tmp_path / "run" / "val_curve.png").is_file() and (tmp_path / "run" / "summary.json").is_file()


def test_early_stop_needs_periodic_evaluation(synth_dirs):
    train_dir, val_dir = synth_dirs
    with pytest.raises(ConfigError, match=r"^config key solver.early_stop=3: needs periodic validation; "
                                          r"set eval.period > 0 and data.val$"):
        _cfg(train_dir, val_dir, "solver.early_stop=3")
    with pytest.raises(ConfigError, match=r"solver.ema: 1.0 is out of range; allowed: >= 0 and < 1"):
        _cfg(train_dir, val_dir, "solver.ema=1")
