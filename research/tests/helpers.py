"""Shared by the research tests: a micro scale, a counting training stub, and runners whose training and
evaluation are a table."""



from research.context import (
    POOR,
    Context,
)
from research.runner import Run, Runner, Scale, config_key

MICRO = Scale("micro", image_size=64, train_images=6, val_images=3, test_images=3, max_iter=4, batch_size=2,
              backbone="tiny", fpn_channels=8, head_convs=1, hidden_dim=4, lr=0.01, warmup_iters=1, eval_batch=3)


class CountingTrain:
    def __init__(self):
        self.calls = []

    def __call__(self, cfg, out_dir, resume=False, progress=True):
        self.calls.append((cfg["anchors"]["train"], cfg["seed"]))
        return {"iterations": cfg["solver"]["max_iter"], "metrics": {}, "wall_time_s": 1.5}


BASELINE_AP = {"1x1": 0.30, "1x3": 0.32, "3x3": 0.35, "5x5": 0.34}  # any other set (the poor ones): 0.05
FLAT = [(100 * i, 0.3 + 0.01 * min(i, 8) - 0.003 * (i == 10)) for i in range(1, 11)]  # last 20 %: 0.377..0.38
RISING = [(100 * i, 0.03 * i) for i in range(1, 11)]  # last 20 % (iterations 800-1000): 0.24..0.30


class FakeRunner(Runner):
    """Training and evaluation replaced by a table: AP depends on head, training and test anchors.

    The baseline scores ``BASELINE_AP``; MetaAnchor scores it plus ``bonus(anchor set)`` (by default +0.02,
    +0.03 on the poor sets, so its range over the sets is smaller); every seed adds 0.002 to both, and
    ``shift(cfg)`` adds a per-run amount (0 by default), ``resize(size)`` one per input size given to
    ``evaluate`` (0 by default; always 0 at the model's own size, ``size=None``). Every split is the real
    ``data`` folder (box statistics are read from it). Trained runs get a validation curve (``curve(cfg)``, FLAT
    by default) in their metrics.csv."""

    def __init__(self, *args, bonus=lambda spec: 0.03 if spec in POOR else 0.02, curve=lambda cfg: FLAT,
                 split_dir=None, shift=lambda cfg: 0.0, resize=lambda size: 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.bonus, self.curve, self.split_dir, self.shift, self.resize = bonus, curve, split_dir, shift, resize

    def dataset(self, distribution, split):
        return self.split_dir or self.root / f"{distribution}-{split}"

    def is_trained(self, cfg):  # every run is "trained" on demand, so every experiment writes its report
        return True

    def train(self, cfg):
        key = config_key(cfg, self.root)
        d = self.root / "runs" / key
        d.mkdir(parents=True, exist_ok=True)
        (d / "metrics.csv").write_text("iter,AP\n" + "".join(f"{i},{ap}\n" for i, ap in self.curve(cfg)))
        devices = ["cpu"] if cfg["seed"] == 0 else ["cuda (Fake GPU)", "cpu"]  # seed 1: resumed on another machine
        return Run(key, d, cfg, {"wall_time_s": 10.0, "devices": devices})

    def evaluate_sets(self, run, data_dir, specs, size=None):
        return [self.evaluate(run, data_dir, s, size) for s in specs]

    def evaluate(self, run, data_dir, anchors=None, size=None):
        base = BASELINE_AP.get(anchors, 0.05)
        bonus = 0.0 if run.cfg["model"]["head"] == "predefined" else self.bonus(anchors)
        ap = base + bonus + self.shift(run.cfg) + 0.002 * run.cfg["seed"] + (self.resize(size) if size else 0.0)
        return {k: ap for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


def fake_ctx(tmp_path, synth_dirs, seeds=(0, 1), **kw):
    runner = FakeRunner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None, split_dir=synth_dirs[1], **kw)
    return Context(runner, list(seeds), tmp_path)


class YoloFakeRunner(FakeRunner):
    """FakeRunner whose training split is a real synthetic dataset (the k-means anchors are fitted to it);
    records the training configs it is asked for."""

    def __init__(self, *args, train_dir=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_dir, self.configs = train_dir, []

    def dataset(self, distribution, split):
        return self.train_dir if split == "train" else super().dataset(distribution, split)

    def train(self, cfg):
        self.configs.append(cfg)
        return super().train(cfg)
