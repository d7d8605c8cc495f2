"""Training callbacks: objects passed as ``train(..., callbacks=[...])`` see every step, validation and
checkpoint of a run, in order, with the trainer and the documented arguments."""

import math

from metaanchor.config import load_config
from metaanchor.engine.train import Trainer, train

TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
        "input.size=64", "solver.batch_size=2", "device=cpu"]


class Recorder:
    """Records every callback event: (event, trainer, args)."""

    def __init__(self):
        self.events = []

    def before_step(self, trainer, it):
        self.events.append(("before_step", trainer, it))

    def after_step(self, trainer, it, losses):
        self.events.append(("after_step", trainer, it, losses))

    def after_eval(self, trainer, it, metrics):
        self.events.append(("after_eval", trainer, it, metrics))

    def on_save(self, trainer, path):
        self.events.append(("on_save", trainer, path))


class StepsOnly:
    """A callback with one of the optional methods."""

    def __init__(self):
        self.steps = []

    def after_step(self, trainer, it, losses):
        self.steps.append(it)


def test_callbacks_see_steps_evaluations_and_saves_in_order(tmp_path, synth_dirs):
    train_dir, val_dir = synth_dirs
    cfg = load_config(None, [*TINY, f"data.train={train_dir}", f"data.val={val_dir}", "solver.max_iter=3",
                             "eval.period=2", "checkpoint.period=2", "log.period=10"])
    rec, steps = Recorder(), StepsOnly()
    out = tmp_path / "run"
    summary = train(cfg, out, progress=False, callbacks=[rec, steps])

    trainer = rec.events[0][1]
    assert isinstance(trainer, Trainer) and all(e[1] is trainer for e in rec.events)
    assert trainer.callbacks == [rec, steps]
    assert steps.steps == [0, 1, 2]
    names = [(e[0], e[2]) for e in rec.events]
    evals = [e[3] for e in rec.events if e[0] == "after_eval"]
    assert len(evals) == 2 and evals[1]["AP"] == summary["metrics"]["3x3"]["AP"]
    # best.pt is written at the first validation (any AP beats none) and at the last one only if AP rose
    final_best = [("on_save", out / "best.pt")] if evals[1]["AP"] > evals[0]["AP"] else []
    assert names == [
        ("before_step", 0), ("after_step", 0),
        ("before_step", 1), ("after_step", 1),
        ("on_save", out / "best.pt"), ("after_eval", 2), ("on_save", out / "last.pt"),  # eval.period=2
        ("before_step", 2), ("after_step", 2),
        ("on_save", out / "last.pt"),  # the end of training
        *final_best, ("after_eval", 3),  # the final validation
    ]
    for e in rec.events:
        if e[0] == "after_step":
            assert set(e[3]) == {"loss", "cls", "box"} and math.isfinite(e[3]["loss"])
        if e[0] == "on_save":
            assert e[2].is_file()
