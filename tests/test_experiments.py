"""Experiment harness: cached runs, reports, anchor fitting and search."""

import csv
import json
import math

import numpy as np
import pytest

from metaanchor.cli import main
from metaanchor.engine.anchor_search import search_anchors, spec_of
from metaanchor.geometry.anchor_fit import (
    anchor_fit_quality,
    fit_anchors,
    kmeans_shapes,
    level_relative,
    level_sizes,
    write_anchor_file,
)
from metaanchor.geometry.anchors import AnchorSet
from metaanchor.tools.experiments import report
from metaanchor.tools.experiments.runner import Run, Runner, Scale, config_key
from metaanchor.tools.experiments.suite import ANCHOR_SETS, BAD, Context, _compare, anchor_configs, cross_eval

MICRO = Scale("micro", image_size=64, train_images=6, val_images=3, test_images=3, max_iter=2, batch_size=2,
              backbone="tiny", fpn_channels=8, head_convs=1, hidden_dim=4, lr=0.01, warmup_iters=1, eval_batch=3)


class CountingTrain:
    def __init__(self):
        self.calls = []

    def __call__(self, cfg, out_dir, resume=False, progress=True):
        self.calls.append((cfg["anchors"]["train"], cfg["seed"]))
        return {"iterations": cfg["solver"]["max_iter"], "metrics": {}, "wall_time_s": 1.5}


def test_runner_trains_each_config_once(tmp_path):
    train = CountingTrain()
    runner = Runner(tmp_path / "cache", MICRO, device="cpu", train_fn=train, log=lambda s: None)
    first = runner.train(runner.config("metaanchor", "3x3", seed=0))
    again = Runner(tmp_path / "cache", MICRO, device="cpu", train_fn=train, log=lambda s: None)
    second = again.train(again.config("metaanchor", "3x3", seed=0))
    assert train.calls == [("3x3", 0)]
    assert first.key == second.key and second.summary["wall_time_s"] == 1.5
    again.train(again.config("metaanchor", "3x3", seed=1))
    again.train(again.config("metaanchor", "scales=4;ratios=1", seed=0))
    assert train.calls == [("3x3", 0), ("3x3", 1), ("scales=4;ratios=1", 0)]


def test_config_key_ignores_device_and_absolute_paths(tmp_path):
    runner = Runner(tmp_path, MICRO, device="cpu", train_fn=CountingTrain(), log=lambda s: None)
    cfg = runner.config("predefined", "1x1", seed=0, sample=False)
    other = json.loads(json.dumps(cfg)) | {"device": "cuda"}
    assert config_key(cfg, tmp_path) == config_key(other, tmp_path)
    assert config_key(cfg, tmp_path) != config_key(runner.config("metaanchor", "1x1", seed=0), tmp_path)


def test_real_micro_run_and_cached_evaluation(tmp_path, monkeypatch):
    runner = Runner(tmp_path, MICRO, device="cpu", log=lambda s: None)
    run = runner.train(runner.config("metaanchor", "1x1", seed=0))
    assert run.checkpoint.is_file() and run.summary["iterations"] == 2
    test = runner.dataset("default", "test")
    m = runner.evaluate(run, test, "2x3")
    assert set(m) >= {"AP", "AP50"} and 0.0 <= m["AP"] <= 1.0

    def boom(*a, **k):
        raise AssertionError("evaluated again instead of using the cache")

    # several sets in one pass give what one evaluation per set gives
    many = runner.evaluate_sets(run, test, ["1x1", "5x5", "2x3"])
    assert many[2] == m
    from metaanchor.engine.evaluate import evaluate

    model, data = runner._model(run), runner._data(test)
    for spec, got in zip(["1x1", "5x5"], many[:2]):
        want = evaluate(model, data, spec, MICRO.eval_batch, progress=False)
        assert {k: got[k] for k in ("AP", "AP50", "AR100")} == {k: want[k] for k in ("AP", "AP50", "AR100")}

    monkeypatch.setattr("metaanchor.engine.evaluate.evaluate", boom)
    monkeypatch.setattr("metaanchor.engine.evaluate.evaluate_many", boom)
    # another spelling of the same 6 shapes hits the same cache entry
    same = runner.evaluate(run, test, f"scales=1,{2 ** 0.5!r};ratios=0.5,1,2")
    assert same["AP"] == m["AP"]
    assert runner.evaluate_sets(run, test, ["5x5", "1x1"]) == [many[1], many[0]]


def test_report_files_contain_the_numbers(tmp_path):
    rows = [{"seed": s, "model": k, "AP": v} for s, (k, v) in enumerate([("a", 0.25), ("a", 0.35), ("b", 0.5)])]
    report.write_csv(rows, tmp_path / "runs.csv")
    back = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert [float(r["AP"]) for r in back] == [0.25, 0.35, 0.5]
    assert report.fmt([0.25, 0.35]) == "0.300 ± 0.050" and report.fmt([0.5]) == "0.500"
    g = report.group(rows, ("model",))
    report.bar_plot({"x": {"a": g[("a",)], "b": g[("b",)]}}, tmp_path / "bars.png", "t")
    report.heatmap(np.array([[0.1, 0.2], [0.3, math.nan]]), ["r1", "r2"], ["c1", "c2"], tmp_path / "hm.png", "t")
    for f in ("bars.png", "hm.png"):
        assert (tmp_path / f).read_bytes()[:4] == b"\x89PNG"


BASELINE_AP = {"1x1": 0.30, "1x3": 0.32, "3x3": 0.35, "5x5": 0.34}  # any other set (the bad one): 0.05


class FakeRunner(Runner):
    """Training and evaluation replaced by a table: AP depends on head, training and test anchors.

    The baseline scores ``BASELINE_AP``; MetaAnchor scores it plus ``bonus(anchor set)`` (by default +0.02,
    +0.03 on the bad set, so its range over the sets is smaller: no exact tie decides "more robust");
    every seed adds 0.002 to both."""

    def __init__(self, *args, bonus=lambda spec: 0.03 if spec == BAD else 0.02, **kwargs):
        super().__init__(*args, **kwargs)
        self.bonus = bonus

    def dataset(self, distribution, split):
        return self.root / f"{distribution}-{split}"

    def train(self, cfg):
        key = config_key(cfg, self.root)
        return Run(key, self.root / key, cfg, {"wall_time_s": 10.0})

    def evaluate_sets(self, run, data_dir, specs):
        return [self.evaluate(run, data_dir, s) for s in specs]

    def evaluate(self, run, data_dir, anchors=None):
        base = BASELINE_AP.get(anchors, 0.05)
        bonus = 0.0 if run.cfg["model"]["head"] == "predefined" else self.bonus(anchors)
        return {k: base + bonus + 0.002 * run.cfg["seed"] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


def test_anchor_configs_report_states_measured_numbers(tmp_path):
    ctx = Context(FakeRunner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None), [0, 1], tmp_path)
    res = anchor_configs(ctx)
    text = (tmp_path / "anchor-configs" / "README.md").read_text()
    assert "| 3x3 | 9 | 0.351 ± 0.001 | 0.371 ± 0.001 | +0.020 |" in text  # means over seeds
    assert res["held"] and "higher than the baseline's on 5 of 5" in res["claim"]
    rows = list(csv.DictReader((tmp_path / "anchor-configs" / "runs.csv").open()))
    assert len(rows) == 2 * 2 * len(ANCHOR_SETS)
    assert (tmp_path / "anchor-configs" / "ap_by_anchor_set.png").is_file()
    cross_eval(ctx)
    assert (tmp_path / "cross-eval" / "heatmap_sampled.png").is_file()
    assert "trained \\ evaluated" in (tmp_path / "cross-eval" / "README.md").read_text()


# MetaAnchor's AP minus the baseline's per anchor set (baseline range over the sets: 0.35 - 0.05 = 0.30)
BETTER_AND_MORE_ROBUST = (lambda spec: 0.2 if spec == BAD else 0.02, True, (5, 0, 0))
BETTER = (lambda spec: 0.03 if spec == BAD else 0.02, True, (5, 0, 0))  # range 0.29
EQUAL = (lambda spec: 0.0, False, (0, 5, 0))
WITHIN_NOISE = (lambda spec: 0.004, False, (0, 5, 0))  # below the TIE threshold
WORSE = (lambda spec: -0.02, False, (0, 0, 5))
BETTER_BUT_LESS_ROBUST = (lambda spec: -0.02 if spec == BAD else 0.02, False, (4, 0, 1))  # range 0.34 > 0.30
MIXED = (lambda spec: 0.02 if spec in ("1x1", "1x3") else -0.02, False, (2, 0, 3))


@pytest.mark.parametrize("bonus, held, counts", [BETTER_AND_MORE_ROBUST, BETTER, EQUAL, WITHIN_NOISE, WORSE,
                                                 BETTER_BUT_LESS_ROBUST, MIXED],
                         ids=["better-and-more-robust", "better", "equal", "within-noise", "worse",
                              "better-but-less-robust", "mixed"])
def test_anchor_configs_verdict_follows_the_measured_numbers(tmp_path, bonus, held, counts):
    runner = FakeRunner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None, bonus=bonus)
    res = anchor_configs(Context(runner, [0, 1], tmp_path))
    higher, tied, lower = counts
    assert (f"higher than the baseline's on {higher} of 5 anchor sets, tied on {tied} and lower on {lower}"
            in res["claim"])
    assert bool(res["held"]) == held
    assert ("held here" in res["claim"]) is held and ("did not clearly hold" in res["claim"]) is not held
    text = (tmp_path / "anchor-configs" / "README.md").read_text()
    assert res["claim"] in text


def test_ties_follow_the_seed_spread():
    assert _compare([0.40, 0.40], [0.30, 0.30]) == "higher" and _compare([0.30, 0.30], [0.40, 0.40]) == "lower"
    assert _compare([0.302, 0.302], [0.30, 0.30]) == "tied"  # below TIE
    assert _compare([0.30, 0.50], [0.35, 0.35]) == "tied"  # 0.05 apart, seeds spread by 0.1
    assert _compare([0.39, 0.41], [0.30, 0.30]) == "higher"  # 0.1 apart, spreads only 0.01


def test_kmeans_recovers_known_shapes():
    rng = np.random.default_rng(0)
    truth = np.array([[0.5, 1.0], [1.0, 1.0], [1.6, 0.8]])
    shapes = np.concatenate([t * np.exp(rng.normal(0, 0.03, (200, 2))) for t in truth])
    fitted = kmeans_shapes(shapes, 3)
    fitted = fitted[np.argsort(fitted[:, 0])]
    assert np.all(np.abs(fitted / truth[np.argsort(truth[:, 0])] - 1) < 0.10)


def test_fit_anchors_gives_level_relative_file_that_parses(tmp_path):
    rng = np.random.default_rng(1)
    # objects at P3 (~32 px) and P5 (~128 px) with the same two shapes relative to their level
    rel = np.array([[0.7, 1.4], [1.4, 0.7]])
    shapes = np.concatenate([r * s * np.exp(rng.normal(0, 0.02, (100, 2))) for r in rel for s in (32, 128)])
    assert np.all(np.abs(level_relative(shapes) / np.repeat(rel, 200, 0) - 1) < 0.1)
    fitted = fit_anchors(shapes, k=2)
    got = sorted(fitted.shapes)
    assert np.all(np.abs(np.array(got) / np.array(sorted(map(tuple, rel))) - 1) < 0.10)
    path = write_anchor_file(fitted, tmp_path / "a.yaml", source="test")
    assert AnchorSet.parse(str(path)) == fitted
    path = write_anchor_file(fitted, tmp_path / "a.json")
    assert AnchorSet.parse(str(path)).shapes == fitted.shapes
    better, worse = anchor_fit_quality(shapes, fitted), anchor_fit_quality(shapes, "scales=4;ratios=1")
    assert better["bpr"] == 1.0 and worse["bpr"] <= 0.5 and better["mean_iou"] > worse["mean_iou"]


def test_level_sizes_are_four_strides():
    assert level_sizes().tolist() == [32, 64, 128, 256, 512]


def test_greedy_search_climbs_to_the_best_set_of_a_stub_scorer():
    def score(spec):  # best: one anchor of scale sqrt(2), ratio 1; extra anchors cost a little
        a = AnchorSet.parse(spec)
        s = np.mean([math.sqrt(h * w) for h, w in a.shapes])
        r = np.mean([abs(math.log2(h / w)) for h, w in a.shapes])
        return -abs(math.log2(s) - 0.5) - r - 0.01 * len(a)

    res = search_anchors(score, (1.0,), (1.0,), method="greedy", budget=40)
    assert res.best[0] == spec_of((2 ** 0.5,), (1.0,))
    assert res.best[1] == max(v for _, v in res.tried)
    rnd = search_anchors(score, (1.0,), (1.0,), method="random", budget=10, seed=3)
    assert len(rnd.tried) == 10 and rnd.best[1] == max(v for _, v in rnd.tried)


def test_cli_anchors_fit_writes_anchor_file(tmp_path, synth_dirs, capsys):
    train, _ = synth_dirs
    out = tmp_path / "fit.yaml"
    assert main(["anchors", "fit", "--data", str(train), "-k", "4", "--out", str(out)]) == 0
    assert len(AnchorSet.parse(str(out)).shapes) == 4
    assert "BPR@0.5" in capsys.readouterr().out


def test_cli_experiment_unknown_name_is_user_error(capsys):
    assert main(["experiment", "nope", "--quick"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["anchors", "search", "--help"], ["experiment", "--help"]])
def test_cli_help(argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0


# ------------------------------------------------------------------------------ yolo
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


@pytest.mark.parametrize("bonus, held", [(0.02, True), (0.0, False), (0.004, False), (-0.02, False)],
                         ids=["metaanchor-better", "equal", "within-noise", "metaanchor-worse"])
def test_yolo_experiment_report_and_verdict(tmp_path, synth_dirs, bonus, held):
    from metaanchor.tools.experiments.suite import YOLO_K, yolo

    train, _ = synth_dirs
    runner = YoloFakeRunner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None, train_dir=train,
                            bonus=lambda spec: bonus)
    res = yolo(Context(runner, [0, 1], tmp_path))
    d = tmp_path / "yolo"
    text = (d / "README.md").read_text()
    assert bool(res["held"]) is held and res["claim"] in text
    assert ("held here" in res["claim"]) is held and ("did not hold" in res["claim"]) is not held
    assert "It would hold if" in res["claim"] or "It would not hold if" in res["claim"]  # what would change it
    # fake AP: 0.05 (+ bonus for MetaAnchor) + 0.002 per seed, two seeds: mean ± half-range
    assert f"| k-means k={YOLO_K} (training) | {YOLO_K} | 0.051 ± 0.001 | {0.051 + bonus:.3f} ± 0.001 |" in text
    assert "Seeds: 0, 1" in text and "wall time" in text
    rows = list(csv.DictReader((d / "runs.csv").open()))
    # per seed: baseline with its training set; MetaAnchor with k=5, k=3, k=9 and a scales/ratios set
    assert len(rows) == 2 * (1 + 4)
    assert {r["num_anchors"] for r in rows if r["anchors"].startswith("k-means")} == {"3", "5", "9"}
    assert (d / "yolo_ap.png").read_bytes()[:4] == b"\x89PNG"
    for k in (3, 5, 9):
        assert len(AnchorSet.parse(str(d / f"kmeans{k}.yaml"))) == k


def test_yolo_experiment_trains_yolov2_with_the_kmeans_file(tmp_path, synth_dirs):
    from metaanchor.families.yolov2 import fit_yolo_anchors
    from metaanchor.tools.experiments.suite import yolo

    train, _ = synth_dirs
    runner = YoloFakeRunner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None, train_dir=train)
    yolo(Context(runner, [0, 1], tmp_path))
    assert len(runner.configs) == 4
    assert {(c["model"]["head"], c["anchors"]["sample"], c["seed"]) for c in runner.configs} == {
        ("predefined", False, 0), ("metaanchor", True, 0), ("predefined", False, 1), ("metaanchor", True, 1)}
    files = {c["anchors"]["train"] for c in runner.configs}
    assert len(files) == 1  # baseline and MetaAnchor: the same k-means anchors
    expected = fit_yolo_anchors(train, k=5, scale=MICRO.image_size / 128)  # synth images: 128 px
    for c in runner.configs:
        assert c["model"]["arch"] == "yolov2" and c["model"]["head_norm"] == "none"
        assert c["input"]["size"] == MICRO.image_size
    assert AnchorSet.parse(files.pop()) == expected


def test_yolo_quick_scale_is_the_demo_config(tmp_path):
    from metaanchor.cli.experiment import NAMES
    from metaanchor.config import load_config
    from metaanchor.tools.experiments.runner import QUICK
    from metaanchor.tools.experiments.suite import EXPERIMENTS, yolo_overrides

    assert "yolo" in EXPERIMENTS and tuple(EXPERIMENTS) == NAMES
    runner = FakeRunner(tmp_path, QUICK, device="cpu", log=lambda s: None)
    cfg = runner.config("metaanchor", "3x3", 0, extra=yolo_overrides(QUICK))
    demo = load_config("configs/yolo_demo.yaml", [])
    for section, key in (("model", "arch"), ("model", "backbone"), ("model", "fpn_channels"),
                         ("model", "head_convs"), ("model", "hidden_dim"), ("input", "size"), ("solver", "lr"),
                         ("solver", "batch_size"), ("solver", "warmup_iters"), ("solver", "max_iter")):
        assert cfg[section][key] == demo[section][key], (section, key)


def test_config_key_makes_anchor_file_paths_relative(tmp_path):
    runner = Runner(tmp_path, MICRO, device="cpu", train_fn=CountingTrain(), log=lambda s: None)
    a = runner.config("predefined", str(tmp_path / "anchors" / "k5.yaml"), seed=0, sample=False)
    b = json.loads(json.dumps(a))
    b["anchors"]["train"] = "anchors/k5.yaml"
    assert config_key(a, tmp_path) == config_key(b, tmp_path)


def test_cli_anchors_fit_yolov2_single_standard_box(tmp_path, synth_dirs, capsys):
    from metaanchor.families.yolov2 import fit_yolo_anchors

    train, _ = synth_dirs  # 128 px images
    out = tmp_path / "yolo.yaml"
    assert main(["anchors", "fit", "--arch", "yolov2", "--data", str(train), "-k", "5", "--out", str(out)]) == 0
    assert AnchorSet.parse(str(out)) == fit_yolo_anchors(train, k=5, scale=416 / 128)
    assert "128 px standard box" in capsys.readouterr().out
    # from a config: model.arch=yolov2 and input.size=256 (configs/yolo_demo.yaml), as its anchor file was made
    out2 = tmp_path / "demo.yaml"
    assert main(["anchors", "fit", "--config", "configs/yolo_demo.yaml", "--data", str(train), "-k", "3",
                 "--out", str(out2)]) == 0
    assert AnchorSet.parse(str(out2)) == fit_yolo_anchors(train, k=3, scale=2.0)
