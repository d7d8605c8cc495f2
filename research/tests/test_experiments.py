"""Cached runs, records, reports and each experiment's verdicts (training and evaluation stubbed where the
numbers are the point)."""

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from metaanchor.geometry.anchor_fit import (
    anchor_fit_quality,
)
from metaanchor.geometry.anchors import AnchorSet
from research import anchor_configs, cross_eval, report, verdicts, yolo
from research.context import (
    ANCHOR_SETS,
    COUNT_TWIN_BY_SCALE,
    ELONGATED,
    LARGE,
    LARGE9,
    POOR,
    SQUARE,
    Context,
    curves_section,
)
from research.runner import Run, Runner, anchor_key, config_key, plateau
from research.tests.helpers import BASELINE_AP, FLAT, MICRO, RISING, CountingTrain, FakeRunner, YoloFakeRunner, fake_ctx
from research.verdicts import compare


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
    assert run.checkpoint.is_file() and run.summary["iterations"] == MICRO.max_iter
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

    # another input size: the model sees images of that size, the result is cached apart, the model keeps its own
    shapes = []
    hook = model.batcher.register_forward_hook(lambda mod, args, out: shapes.append(tuple(out[0].shape[-2:])))
    runner.evaluate(run, test, "2x3", size=32)
    hook.remove()
    assert shapes and all(max(hw) == 32 for hw in shapes)  # the test images are square, 64 px
    assert (model.batcher.min_size, model.batcher.max_size) == (MICRO.image_size, MICRO.image_size)
    keys = json.loads((run.dir / "evals.json").read_text())
    assert sum(k.startswith(f"{test.name}@32px|") for k in keys) == 1

    monkeypatch.setattr("metaanchor.engine.evaluate.evaluate", boom)
    monkeypatch.setattr("metaanchor.engine.evaluate.evaluate_many", boom)
    # another spelling of the same 6 shapes hits the same cache entry
    same = runner.evaluate(run, test, f"scales=1,{2 ** 0.5!r};ratios=0.5,1,2")
    assert same["AP"] == m["AP"]
    assert runner.evaluate_sets(run, test, ["5x5", "1x1"]) == [many[1], many[0]]
    assert runner.evaluate(run, test, "2x3", size=32) == keys[f"{test.name}@32px|{anchor_key('2x3')}"]


def test_records_carry_a_finished_run_to_a_machine_without_its_cache(tmp_path, monkeypatch):
    import dataclasses

    from metaanchor.engine.evaluate import evaluate_many as real_many
    from metaanchor.errors import UserError

    scale = dataclasses.replace(MICRO, eval_period=2)  # a validation curve: AP at iterations 2 and 4
    records = tmp_path / "repo" / "records"
    here = Runner(tmp_path / "here", scale, device="cpu", log=lambda s: None, records=records)
    cfg = here.config("metaanchor", "1x1", seed=0)
    run = here.train(cfg)
    test = here.dataset("default", "test")
    m = here.evaluate_sets(run, test, ["1x1", "2x3"])
    rec = json.loads((records / f"{run.key}.json").read_text())
    assert rec["summary"]["iterations"] == 4 and [it for it, _ in rec["curve"]] == [2, 4]
    assert {v["anchors"]: v["AP"] for v in rec["evals"].values()} == {"1x1": m[0]["AP"], "2x3": m[1]["AP"]}

    def boom(*a, **k):
        raise AssertionError("trained or evaluated again instead of using the record")

    # another machine: an empty cache (its own synthetic data), the same records; nothing is trained or evaluated
    monkeypatch.setattr("metaanchor.engine.evaluate.evaluate_many", boom)
    there = Runner(tmp_path / "there", scale, device="cpu", train_fn=boom, log=lambda s: None, records=records)
    cfg2 = there.config("metaanchor", "1x1", seed=0)
    assert config_key(cfg2, there.root) == run.key and there.is_trained(cfg2)
    again = there.train(cfg2)
    assert again.summary["metrics"]["1x1"]["AP"] == run.summary["metrics"]["1x1"]["AP"] and again.curve == run.curve
    assert "pr50" in run.summary["metrics"]["1x1"] and "pr50" not in again.summary["metrics"]["1x1"]
    assert not again.checkpoint.is_file()
    assert there.evaluate_sets(again, there.dataset("default", "test"), ["2x3", "1x1"]) == [m[1], m[0]]
    with pytest.raises(UserError) as err:
        there.evaluate(again, there.dataset("default", "test"), "5x5")
    assert str(err.value) == (
        f"run {run.key}: evaluation {test.name}|{anchor_key('5x5')} (anchors 5x5) is not in its record "
        f"{records / (run.key + '.json')} and the run's checkpoint is not on this machine; delete the record to "
        "train the run again")
    # an unfinished try left here (stopped, then the run was trained to the end elsewhere): the record wins
    again.dir.mkdir(parents=True)
    (again.dir / "metrics.csv").write_text("iter,AP\n2,0.5\n")
    shutil.copy(run.checkpoint, again.checkpoint)
    assert there.train(cfg2).curve == run.curve and not again.weights_here
    with pytest.raises(UserError, match=r"is not in its record .* and only an unfinished try's checkpoint is on "
                                        r"this machine; delete the record to train the run again"):
        there.evaluate(again, there.dataset("default", "test"), "5x5")
    assert not there.is_trained(there.config("metaanchor", "1x1", seed=1))
    assert set(rec["data"]) == {Path(cfg["data"]["train"]).name, Path(cfg["data"]["val"]).name, test.name}

    # data that differ from the record's (same folder name, other boxes) stop the run's reuse
    ann = there.dataset("default", "test") / "annotations.json"
    coco = json.loads(ann.read_text())
    coco["annotations"][0]["bbox"][2] += 1.0
    ann.write_text(json.dumps(coco))
    with pytest.raises(UserError, match=rf"made with data {test.name} whose annotations.json has SHA-1 "
                                        rf"{rec['data'][test.name]}\.\.\., but .* the data differ"):
        there.evaluate(again, there.dataset("default", "test"), "1x1")

    # a run finished before records existed gets its record the next time it is asked for
    (records / f"{run.key}.json").unlink()
    assert here.train(cfg).key == run.key
    migrated = json.loads((records / f"{run.key}.json").read_text())
    assert migrated["evals"] == rec["evals"] and test.name not in migrated["data"]
    here.evaluate(run, test, "1x1")  # cached, and now its data's fingerprint is recorded
    assert json.loads((records / f"{run.key}.json").read_text())["data"] == rec["data"]

    # two suites sharing the cache evaluate the run at the same time: neither drops the other's result
    other = Runner(tmp_path / "here", scale, device="cpu", log=lambda s: None, records=records)

    def meanwhile(model, data, specs, *args, **kwargs):  # while `here` evaluates 5x5, `other` evaluates 1x3
        out = real_many(model, data, specs, *args, **kwargs)
        if specs == ["5x5"]:
            other.evaluate(other.train(cfg), test, "1x3")
        return out

    monkeypatch.setattr("metaanchor.engine.evaluate.evaluate_many", meanwhile)
    here.evaluate(run, test, "5x5")
    want = {"1x1", "2x3", "5x5", "1x3"}
    assert {v["anchors"] for v in json.loads((records / f"{run.key}.json").read_text())["evals"].values()} == want
    assert {v["anchors"] for v in json.loads((run.dir / "evals.json").read_text()).values()} == want


def test_evaluate_only_records_the_trained_runs_and_writes_no_report(tmp_path, synth_dirs):
    import time

    from research import generator
    from research.context import EvaluatedOnly
    from research.suite import run_experiments

    ctx = fake_ctx(tmp_path, synth_dirs, seeds=(0,))
    planned = generator.plan(ctx)
    trained = {config_key(p.cfg, ctx.runner.root) for p in planned[:2]}
    ctx.runner.is_trained = lambda cfg: config_key(cfg, ctx.runner.root) in trained
    seen = []
    ctx.runner.train = lambda cfg, train=ctx.runner.train: seen.append(config_key(cfg, ctx.runner.root)) or train(cfg)
    ctx.evaluate_only = True
    with pytest.raises(EvaluatedOnly) as stop:
        generator.run(ctx)
    assert stop.value.args == (2,) and set(seen) == trained
    assert run_experiments(["generator"], ctx) == {}
    assert not (tmp_path / "generator").exists() and not (tmp_path / "README.md").exists()
    # a time budget that starts no run leaves the experiment incomplete: it is evaluated, not reported
    ctx.evaluate_only, seen[:] = False, []
    assert run_experiments(["generator"], ctx, until=time.time() - 1) == {} and set(seen) == trained
    assert not ctx.evaluate_only and not (tmp_path / "generator").exists()
    # search writes its found sets only with its report
    from research import search

    trained.update(config_key(p.cfg, ctx.runner.root) for p in search.plan(ctx))
    ctx.evaluate_only = True
    with pytest.raises(EvaluatedOnly):
        search.run(ctx)
    assert not (tmp_path / "search").exists()  # its k-means file went to the cache, its found sets nowhere


def test_poor_sets_follow_the_data_the_runs_train_on(tmp_path, synth_dirs):
    """Square-only is a good set for BCCD's round cells, so the bccd scale trains with an elongated-only set
    instead; the synthetic scales keep square-only. Search's poor-set models follow."""
    from research import search
    from research.runner import BCCD, CONVERGED

    synthetic = Context(Runner(tmp_path, CONVERGED, device="cpu", log=lambda s: None), [0], tmp_path)
    bccd = Context(Runner(tmp_path, BCCD, device="cpu", data=str(synth_dirs[0]), log=lambda s: None), [0], tmp_path)
    assert synthetic.poor == POOR == (SQUARE, LARGE) and synthetic.anchor_sets == ANCHOR_SETS
    assert bccd.poor == (ELONGATED, LARGE)
    assert bccd.anchor_sets == ("1x1", "1x3", "3x3", "5x5", ELONGATED, LARGE)
    assert list(search.search_from(synthetic)) == ["3x3", "square only (3x1)",
                                                   "square only (3x1), ratios sampled 1/4..4"]
    assert search.search_from(bccd)["elongated only (3x2), ratios sampled ×2^±2"] == (
        ELONGATED, ("anchors.ratio_jitter=2.0",), "poor_wide")
    assert [p.info["anchors"] for p in anchor_configs.plan(bccd) if p.info["head"] == "predefined"] == [
        *bccd.anchor_sets, LARGE9]  # the last: the count-twin extra run, BCCD only
    assert bccd.count_twin == (LARGE, LARGE9) and synthetic.count_twin is None


def test_scale_section_counts_the_test_images_of_the_users_data(tmp_path, synth_dirs):
    """With ``--data`` the Scale section counts the images of that test split (the real-data scale has no
    synthetic count: it said '0 images')."""
    from research.context import scale_section, split_images
    from research.runner import BCCD

    data = synth_dirs[0]  # the fixture writes 48 images, in one folder without splits (used as the test split)
    ctx = Context(Runner(tmp_path, BCCD, device="cpu", data=str(data), log=lambda s: None), [0], tmp_path)
    assert "on the test split (48 images)" in scale_section(ctx, [], 0.0)
    val = tmp_path / "split" / "val"  # search's validation split: counted too (the search report said '0 images')
    shutil.copytree(data, val)
    coco = json.loads((val / "annotations.json").read_text())
    (val / "annotations.json").write_text(json.dumps(dict(coco, images=coco["images"][:5])))
    split = Context(Runner(tmp_path, BCCD, device="cpu", data=str(val.parent), log=lambda s: None), [0], tmp_path)
    assert split_images(split, "val") == 5
    assert split_images(Context(Runner(tmp_path, MICRO, device="cpu", log=lambda s: None), [0], tmp_path),
                        "val") == MICRO.val_images


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


def test_anchor_configs_report_states_measured_numbers(tmp_path, synth_dirs):
    ctx = fake_ctx(tmp_path, synth_dirs, curve=lambda cfg: RISING if cfg["model"]["head"] == "predefined" else FLAT)
    res = anchor_configs.run(ctx)
    d = tmp_path / "anchor-configs"
    text = (d / "README.md").read_text()
    bpr = anchor_fit_quality(anchor_configs.box_shapes(synth_dirs[1]), "3x3")["bpr"]
    assert f"| 3x3 | 9 | {bpr:.2f} | 0.351 ± 0.001 | 0.371 ± 0.001 | +0.020 |" in text  # means over seeds
    rows = list(csv.DictReader((d / "runs.csv").open()))
    assert len(rows) == 2 * (2 * len(ANCHOR_SETS) + 1)  # two seeds, two heads per set + the unsampled extra run
    # the plateau rule per run: MetaAnchor's curves are flat at the end, the baseline's still rise
    assert {(r["model"], r["converged"]) for r in rows} == {("MetaAnchor", "True"), ("baseline", "False"),
                                                            ("MetaAnchor, no sampling", "True")}
    assert {r["seed"] for r in rows} == {"0", "1"}
    assert {(r["seed"], r["device"]) for r in rows} == {("0", "cpu"), ("1", "cuda (Fake GPU), then cpu")}
    assert ("Training runs used: 26, trained on cpu: 13; cuda (Fake GPU), then cpu: 13 (iterations on a GPU ran in "
            "mixed precision, solver.amp; on the CPU in float32);") in text
    assert "14 of 26 runs passed the plateau rule" in text and "largest range 0.060" in text
    for f in ("ap_by_anchor_set.png", "val_curves.png"):
        assert (d / f).read_bytes()[:4] == b"\x89PNG"
    claims = dict(res["verdicts"])
    assert claims["robust to the anchor set"].held  # ranges 0.30 (baseline) vs 0.29 (MetaAnchor), noise 0.005
    cross_eval.run(ctx)
    for f in ("heatmap.png", "generalisation.png", "runs.csv", "curve.csv"):
        assert (tmp_path / "cross-eval" / f).is_file()
    assert "trained \\ evaluated" in (tmp_path / "cross-eval" / "README.md").read_text()


# MetaAnchor's AP minus the baseline's per anchor set (baseline range over the sets: 0.35 - 0.05 = 0.30;
# two seeds 0.002 apart: spreads 0.001, so the noise of every comparison is TIE = 0.005)
BETTER_AND_MORE_ROBUST = (lambda spec: 0.2 if spec in POOR else 0.02, True, True)  # range 0.12
SLIGHTLY_MORE_ROBUST = (lambda spec: 0.023 if spec in POOR else 0.02, True, False)  # range 0.297: within noise
EQUAL = (lambda spec: 0.0, False, False)
WORSE = (lambda spec: -0.02, False, False)
LESS_ROBUST = (lambda spec: -0.02 if spec in POOR else 0.02, False, False)  # range 0.34
ONE_POOR_SET = (lambda spec: 0.2 if spec == SQUARE else 0.0, False, False)  # range 0.30 (LARGE still 0.05)
ROBUST_BY_LOSING = (lambda spec: 0.0 if spec in POOR else -0.1, False, True)  # range 0.20, equal on poor sets


@pytest.mark.parametrize("bonus, poor_held, robust_held",
                         [BETTER_AND_MORE_ROBUST, SLIGHTLY_MORE_ROBUST, EQUAL, WORSE, LESS_ROBUST, ONE_POOR_SET,
                          ROBUST_BY_LOSING],
                         ids=["better-and-more-robust", "slightly-more-robust", "equal", "worse", "less-robust",
                              "one-poor-set", "robust-by-losing"])
def test_anchor_configs_verdicts_follow_the_measured_numbers(tmp_path, synth_dirs, bonus, poor_held, robust_held):
    res = anchor_configs.run(fake_ctx(tmp_path, synth_dirs, bonus=bonus))
    claims = dict(res["verdicts"])
    robust = claims.pop("robust to the anchor set")
    claims.pop("anchor sampling raises MetaAnchor's AP with 1x3 (extra run: trained without it)")
    assert robust.held is robust_held
    means = [BASELINE_AP.get(s, 0.05) + bonus(s) for s in ANCHOR_SETS]
    assert robust.margin == pytest.approx(0.30 - (max(means) - min(means)))
    assert robust.noise == pytest.approx(verdicts.TIE)
    assert set(claims) == {f"better than the baseline with the poor set {anchor_configs.label(s)}" for s in POOR}
    assert all(v.held for v in claims.values()) is poor_held
    text = (tmp_path / "anchor-configs" / "README.md").read_text()
    for claim, v in res["verdicts"]:
        assert f"- **{claim}**: {'held' if v.held else 'did not hold'}. {v.text}." in text


def test_anchor_configs_results_name_the_sets_that_bound_metaanchors_range(tmp_path, synth_dirs):
    gains = {"1x1": 0.01, "1x3": 0.02, "3x3": 0.04, "5x5": 0.03, SQUARE: 0.06, LARGE: 0.05}

    def baseline_shift(cfg):  # the baseline's best set becomes 1x1 (0.30 + 0.06), its worst LARGE (0.05 - 0.004)
        spec = cfg["anchors"]["train"]
        return {"1x1": 0.06, LARGE: -0.004}.get(spec, 0.0) * (cfg["model"]["head"] == "predefined")

    anchor_configs.run(fake_ctx(tmp_path, synth_dirs, bonus=gains.get, shift=baseline_shift))
    text = (tmp_path / "anchor-configs" / "README.md").read_text()
    # MetaAnchor's means: 3x3 0.35 + 0.04 is the highest, LARGE 0.05 + 0.05 the lowest
    large = anchor_configs.label(LARGE)
    sentence = (f"MetaAnchor's range over the sets runs from {large} (Δ +0.054 over the baseline) to 3x3 "
                f"(Δ +0.040); the baseline's runs from {large} to 1x1.")
    # it belongs to the results, not to the extra run's section that follows them
    assert text.index("## Results (test AP)") < text.index(sentence) < text.index("## Extra run")

    anchor_configs.run(fake_ctx(tmp_path, synth_dirs, bonus=gains.get,
                                shift=lambda cfg: -0.004 * (cfg["anchors"]["train"] == LARGE)))
    text = (tmp_path / "anchor-configs" / "README.md").read_text()
    assert (f"MetaAnchor's range over the sets runs from {large} (Δ +0.050 over the baseline) to 3x3 (Δ +0.040); "
            "the baseline's best and worst sets are the same, so MetaAnchor's range is the baseline's plus the gain "
            "on the best set minus the gain on the worst.") in text  # both heads: 3x3 best, LARGE worst


def test_the_unsampled_extra_run_finds_no_gain_to_explain_when_metaanchor_is_level_with_1x3(tmp_path, synth_dirs):
    def unsampled_loses(cfg):  # without sampling: 0.001 below MetaAnchor with sampling, within the noise
        return -0.001 * (cfg["model"]["head"] == "metaanchor" and not cfg["anchors"]["sample"])

    ctx = fake_ctx(tmp_path, synth_dirs, bonus=lambda spec: 0.001 if spec == "1x3" else 0.02, shift=unsampled_loses)
    anchor_configs.run(ctx)
    text = (tmp_path / "anchor-configs" / "README.md").read_text()
    assert ("Reading: with this set MetaAnchor is level with the baseline (+0.001, within the noise), so there is no "
            "gain to explain; without sampling it is tied against the baseline and tied against MetaAnchor with "
            "sampling (-0.001; tied: within the noise).") in text


@pytest.mark.parametrize("twin_bonus, held, ending", [
    (0.03, True, "higher with its nine-anchor twin (Δ +0.030); with anchors of the standard size the same step, 1x3 "
                 "to 3x3, moves Δ from +0.020 to +0.020: consistent with the number of anchors (as with 1x3) rather "
                 "than their size deciding MetaAnchor's level result with too large (scale 2, 1x3), but it is one "
                 "configuration whose anchors are also larger still, so it does not separate the anchors' number "
                 "from their size."),
    (0.001, False, "tied with its nine-anchor twin (Δ +0.001); with anchors of the standard size the same step, 1x3 "
                   "to 3x3, moves Δ from +0.020 to +0.020, so the number of anchors does not explain MetaAnchor's "
                   "result with the poor set."),
], ids=["count-explains", "count-does-not"])
def test_the_count_twin_extra_run_tells_anchor_size_from_anchor_count(tmp_path, synth_dirs, monkeypatch,
                                                                     twin_bonus, held, ending):
    plain = fake_ctx(tmp_path / "plain", synth_dirs)
    assert plain.count_twin is None and not [p for p in anchor_configs.plan(plain) if p.info.get("count_twin")]
    monkeypatch.setitem(COUNT_TWIN_BY_SCALE, MICRO.name, (LARGE, LARGE9))
    ctx = fake_ctx(tmp_path, synth_dirs, bonus=lambda spec: {LARGE: 0.0, LARGE9: twin_bonus}.get(spec, 0.02))
    twins = [p for p in anchor_configs.plan(ctx) if p.info.get("count_twin")]
    assert sorted((p.seed, p.cfg["model"]["head"], p.cfg["anchors"]["train"], p.cfg["anchors"]["sample"])
                  for p in twins) == [(s, h, LARGE9, h == "metaanchor") for s in (0, 1)
                                      for h in ("metaanchor", "predefined")]
    res = anchor_configs.run(ctx)
    v = dict(res["verdicts"])["better than the baseline with too large, 9 anchors (3x3 doubled) (extra run: the "
                              "too-large set with nine anchors)"]
    assert v.held is held and v.margin == pytest.approx(twin_bonus)
    text = (tmp_path / "anchor-configs" / "README.md").read_text()
    assert ("Reading: against the baseline (tied: within the noise) MetaAnchor is tied with too large (scale 2, 1x3) "
            "(Δ +0.000) and " + ending) in text
    assert text.index("## Extra run: MetaAnchor without") < text.index("## Extra run: the too-large set") < text.index(
        "## Convergence")


@pytest.mark.parametrize("loss, held, reading", [
    (0.02, True, "without sampling MetaAnchor is level with the baseline (+0.000, within the noise 0.005) and below "
                 "MetaAnchor with sampling (-0.020, beyond the noise 0.005), so its gain over the baseline with this "
                 "set needs the anchor sampling; what the generated last layers add without sampling is within the "
                 "noise here, neither shown nor ruled out"),
    (0.0, False, "without sampling MetaAnchor keeps its gain (within the noise 0.005 of MetaAnchor with sampling), "
                 "so the gain does not need the anchor sampling"),
    (0.01, True, "both contribute: of MetaAnchor's +0.020 over the baseline, sampling the anchors accounts for "
                 "+0.010 and the generated last layers trained without sampling for +0.010"),
    (0.03, True, "without sampling MetaAnchor scores below the baseline (-0.010), so all of its +0.020 over the "
                 "baseline with this set comes from sampling the anchors during training; last layers generated for "
                 "one fixed set do worse here than predefined ones"),
    (-0.01, False, "without sampling MetaAnchor's AP is higher against the baseline and higher against MetaAnchor "
                   "with sampling (tied: within the noise), which neither explanation fits"),
], ids=["gain-from-sampling", "gain-from-generator", "both", "below-the-baseline", "above-the-sampled"])
def test_the_unsampled_extra_run_says_where_the_gain_comes_from(tmp_path, synth_dirs, loss, held, reading):
    def unsampled_loses(cfg):  # MetaAnchor trained without anchor sampling loses ``loss`` AP
        return -loss * (cfg["model"]["head"] == "metaanchor" and not cfg["anchors"]["sample"])

    runner = FakeRunner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None, split_dir=synth_dirs[1],
                        shift=unsampled_loses)
    res = anchor_configs.run(Context(runner, [0, 1], tmp_path))
    v = dict(res["verdicts"])["anchor sampling raises MetaAnchor's AP with 1x3 (extra run: trained without it)"]
    assert v.held is held and v.margin == pytest.approx(loss)
    text = (tmp_path / "anchor-configs" / "README.md").read_text()
    flat = BASELINE_AP["1x3"] + 0.02 - loss + 0.001  # mean over seeds 0 and 1 (+0.000, +0.002)
    assert f"| 1x3 | 0.321 ± 0.001 | 0.341 ± 0.001 | {flat:.3f} ± 0.001 |" in text
    assert f"Reading: {reading}" in text


@pytest.mark.parametrize("main_gain, gain, held, reading", [
    (0.0, 0.03, True, "the data-dependent generator gains more where the image tells the box shapes (+0.030) than "
                      "on the main data ("),
    (0.0, 0.0, False, "the data-dependent generator does not gain even where the image tells the box shapes"),
    (0.0, -0.03, False, "the data-dependent generator is lower even where the image tells the box shapes"),
    (0.02, 0.03, True, "the data-dependent generator gains more where the image tells the box shapes (+0.030) than "
                       "on the main data (+0.020; per seed +0.030, +0.030 vs +0.020, +0.020), so it uses what"),
    (0.02, 0.022, True, "the data-dependent generator gains where the image tells the box shapes (+0.022) and about "
                        "as much on the main data (+0.020; per seed +0.022, +0.022 vs +0.020, +0.020, within the "
                        "noise of each other), so these runs do not show"),
    (0.02, 0.0, False, "the data-dependent generator gains on the main data but not where the image tells the box "
                       "shapes"),
], ids=["gains", "tied", "lower", "gains-more-than-on-main", "gains-as-much-as-on-main", "gains-on-main-only"])
def test_data_dependent_extra_run_on_images_that_tell_their_box_shapes(tmp_path, main_gain, gain, held, reading):
    from research import data_dependent

    def dd_gains(cfg):  # the data-dependent generator gains ``main_gain`` AP on the main data, ``gain`` on the extra
        if cfg["model"]["head"] != "metaanchor-dd":
            return 0.0
        return gain if "wide-or-tall" in cfg["data"]["train"] else main_gain

    runner = FakeRunner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None, shift=dd_gains)
    res = data_dependent.run(Context(runner, [0, 1], tmp_path))
    claims = dict(res["verdicts"])
    main = claims.pop("the data-dependent generator is better")
    assert main.held is (main_gain > 0) and main.margin == pytest.approx(main_gain)
    (claim, v), = claims.items()
    assert claim == ("the data-dependent generator is better where each image holds only wide or only tall boxes "
                     "(extra run, 'wide-or-tall')")
    assert v.held is held and v.margin == pytest.approx(gain)
    text = (tmp_path / "data-dependent" / "README.md").read_text()
    di = BASELINE_AP["3x3"] + 0.02 + 0.001  # FakeRunner's 3x3 AP, mean over seeds 0 and 1
    assert f"| 3x3 | {di:.3f} ± 0.001 | {di + gain:.3f} ± 0.001 | {gain:+.3f} |" in text
    assert f"Reading: {reading}" in text
    if main_gain:
        assert f"sampled anchors): {main_gain:+.3f}, {main_gain:+.3f}. The verdict" in text
    # two different models of one seed: unpaired, with the per-seed differences listed and explained
    assert f"per seed Δ {gain:+.3f}, {gain:+.3f})." in text
    assert "yet their comparison stays unpaired (one rule for every report)" in text
    rows = list(csv.DictReader((tmp_path / "data-dependent" / "runs.csv").open()))
    assert sum(r["data"] == "wide-or-tall" for r in rows) == 4  # 2 generators x 2 seeds, 3x3 only


def test_generator_report_verdicts_and_its_least_stable_number(tmp_path, synth_dirs):
    from research import generator

    # the model trained on the fixed set scores 0.05 lower everywhere; width 64 seed 1 loses 0.05 more with
    # the halved scales only, which makes that the one number that varies most over seeds (MICRO's default
    # generator width is 4, so the width verdict compares 4 with 64 on the training set)
    ctx = fake_ctx(tmp_path, synth_dirs, seeds=(0, 1, 2), shift=lambda cfg: 0.0 if cfg["anchors"]["sample"] else -0.05)
    plain, halved = ctx.runner.evaluate, generator.EVAL_SETS["3x3 scales x0.5"]

    def evaluate(run, data_dir, anchors=None, size=None):
        m = plain(run, data_dir, anchors, size)
        unstable = run.cfg["model"]["hidden_dim"] == 64 and anchors == halved and run.cfg["seed"] == 1
        return {k: v - 0.05 * unstable for k, v in m.items()}

    ctx.runner.evaluate = evaluate
    claims = dict(generator.run(ctx)["verdicts"])
    width, sampling = claims.values()
    assert width.held and width.margin == pytest.approx(0.0)  # both widths score the same: "at least" holds
    assert sampling.held and sampling.margin == pytest.approx(0.05)
    assert sampling.text.endswith("(beyond the noise 0.005; per seed Δ +0.050, +0.050, +0.050)")
    text = (tmp_path / "generator" / "README.md").read_text()
    # the shifted sets score the fake's 0.05 + 0.02 MetaAnchor bonus + 0.002 per seed
    assert ("The least stable number over seeds: width 64 with '3x3 scales x0.5', 0.070, 0.022, 0.074 "
            "(seeds 0, 1, 2).") in text
    assert "the sampling verdict if the model trained on the fixed set came within the noise" in text


def test_ties_follow_the_seed_spread():
    assert compare([0.40, 0.40], [0.30, 0.30]) == "higher" and compare([0.30, 0.30], [0.40, 0.40]) == "lower"
    assert compare([0.302, 0.302], [0.30, 0.30]) == "tied"  # below TIE
    assert compare([0.30, 0.50], [0.35, 0.35]) == "tied"  # 0.05 apart, seeds spread by 0.1
    assert compare([0.39, 0.41], [0.30, 0.30]) == "higher"  # 0.1 apart, spreads only 0.01


def test_schedule_verdict_both_ways():
    from research.schedule import GAIN, long_enough

    ok = long_enough([0.30, 0.30], [0.305, 0.305], "baseline")  # gain 0.005 <= 0.01 + 0.005
    assert ok.held and ok.margin == pytest.approx(GAIN - 0.005)
    assert ok.text == ("baseline: test AP 0.300 -> 0.305 with twice the iterations, gain +0.005 "
                       "(allowed 0.01 + noise 0.005; per seed Δ +0.005, +0.005)")
    short = long_enough([0.26, 0.27], [0.32, 0.33], "baseline")  # gain 0.06 > 0.01 + 0.01
    assert not short.held and short.margin == pytest.approx(0.01 - 0.06)
    # held only through the seed spread: every seed gained more than GAIN, and the text says so
    spread = long_enough([0.495, 0.511, 0.510], [0.515, 0.535, 0.546], "baseline")
    assert spread.held and spread.per_seed == pytest.approx((0.020, 0.024, 0.036))
    assert spread.text.endswith("; every seed gained more than 0.01, so the mean is within the noise, not flat")
    assert "every seed" not in long_enough([0.50, 0.51], [0.505, 0.53], "baseline").text  # one seed gained 0.005


def test_transfer_report_adds_anchors_searched_on_b_for_metaanchor(tmp_path, synth_dirs):
    from research import transfer

    ctx = fake_ctx(tmp_path, synth_dirs, seeds=[0], resize=lambda n: -0.05)  # other input sizes do worse
    res = transfer.run(ctx)
    rows = list(csv.DictReader((tmp_path / "transfer" / "runs.csv").open()))
    searched = [r for r in rows if r["anchors"] == transfer.SEARCHED]
    assert {r["model"] for r in searched} == {"MetaAnchor"} and len(searched) == len(transfer.TRANSFER)
    assert all(r["test_on"] == b for r, (_, b) in zip(searched, transfer.TRANSFER))
    text = (tmp_path / "transfer" / "README.md").read_text()
    assert "## Anchors searched on B" in text
    for r, (a, b) in zip(searched, transfer.TRANSFER):
        assert f"| {a} → {b} | 0.370 | 0.070 | {float(r['AP']):.3f} | `{r['spec']}` |" in text
    claims = [c for c, _ in res["verdicts"]]
    assert len(claims) == 2 * len(transfer.TRANSFER)  # every model finds B's objects: no explanation is asked for
    assert claims[-1] == "MetaAnchor with anchors searched on B's validation split beats the better baseline variant " \
                         "on elongated → bccd-like"
    # no other input size helps here: the model's own size is chosen
    resized = [r for r in rows if r["anchors"] == transfer.RESIZED]
    assert len(resized) == 2 * len(transfer.TRANSFER) and {r["input_size"] for r in resized} == {"64"}
    assert "| default → tall | MetaAnchor | 0.370 | 0.320 | 0.320 | 0.320 | 64 px | 0.370 | 0.370 |" in text


def test_transfer_explains_a_pair_no_model_detects_by_resizing_b(tmp_path, synth_dirs):
    """Where both heads score below the floor on B, the input size searched on B's val says whether the
    features (not the anchors) failed: here 32 px inputs (half the training size) lift every model by 0.2 AP."""
    from research import transfer

    ctx = fake_ctx(tmp_path, synth_dirs, seeds=[0], shift=lambda cfg: -0.34, resize=lambda n: 0.2 * (n == 32))
    res = transfer.run(ctx)
    rows = list(csv.DictReader((tmp_path / "transfer" / "runs.csv").open()))
    resized = [r for r in rows if r["anchors"] == transfer.RESIZED]
    assert {r["input_size"] for r in resized} == {"32"}
    assert {round(float(r["AP"]), 3) for r in resized} == {0.21, 0.23}  # baseline 0.01 + 0.2, MetaAnchor 0.03 + 0.2
    text = (tmp_path / "transfer" / "README.md").read_text()
    assert "| small → large | MetaAnchor | 0.030 | 0.030 | 0.230 | 0.030 | 32 px | 0.030 | 0.230 |" in text
    claims = dict(res["verdicts"])
    assert len(claims) == 3 * len(transfer.TRANSFER)
    v = claims["explanation of small → large: B's objects are found once its images are resized (the features, "
               "not the anchors, fail to transfer)"]
    assert v.held and v.margin == pytest.approx(0.2) and v.paired  # the same models at two input sizes
    assert "the noise is the spread (half-range) of the per-seed differences" in text
    assert not any(c.paired for n, c in claims.items() if not n.startswith("explanation"))  # MetaAnchor vs baseline
    assert v.text.startswith("MetaAnchor's test AP on large, 3x3 anchors, input size searched on large's val vs "
                             "64 px: 0.230 vs 0.030")
    assert not claims["MetaAnchor with adapted anchors beats the better baseline variant on small → large"].tested


def test_verdicts_from_fewer_than_three_seeds_are_marked_preliminary():
    assert verdicts.MIN_SEEDS == 3
    assert verdicts.held_cell(True, 3) == "held" and verdicts.held_cell(False, 5) == "not held"
    assert verdicts.held_cell(True, 1) == "held (preliminary: 1 seed)"
    assert verdicts.held_cell(False, 2) == "not held (preliminary: 2 seeds)"
    assert verdicts.held_cell(False, 1, tested=False) == "untested (both below 0.05 AP) (preliminary: 1 seed)"


def test_verdict_rules_both_ways():
    assert verdicts.better([0.40, 0.42], [0.30, 0.31], "x").held  # +0.105 beyond noise 0.015
    assert not verdicts.better([0.30, 0.34], [0.30, 0.31], "x").held  # +0.015 within noise 0.025
    assert not verdicts.better([0.20, 0.21], [0.30, 0.31], "x").held
    assert verdicts.at_least([0.30, 0.31], [0.30, 0.32], "x").held  # -0.005: within noise, so >= holds
    assert not verdicts.at_least([0.20, 0.21], [0.30, 0.31], "x").held
    v = verdicts.at_least([0.20, 0.21], [0.30, 0.31], "searched vs training set")
    assert v.margin == pytest.approx(-0.10) and v.noise == pytest.approx(0.01)
    assert v.text == ("searched vs training set: 0.205 vs 0.305, Δ -0.100 (beyond the noise 0.010; "
                      "per seed Δ -0.100, -0.100)")
    # a floor: when both sides fail (e.g. a transfer where no model finds the objects) the claim is not held
    low = verdicts.better([0.015, 0.015], [0.010, 0.010], "x", floor=verdicts.FLOOR)
    assert not low.held and not low.tested and low.margin == pytest.approx(0.005)
    assert low.text == "x: 0.015 vs 0.010, Δ +0.005; both below 0.05 AP, so this comparison tests nothing (no verdict)"
    assert verdicts.better([0.06, 0.06], [0.01, 0.01], "x", floor=verdicts.FLOOR).held  # one side above: judged
    # robustness: range of the per-set means, noise = the two largest seed spreads
    meta = {"a": [0.40, 0.40], "b": [0.38, 0.38]}  # range 0.02
    assert verdicts.robustness(meta, {"a": [0.40, 0.40], "b": [0.20, 0.20]}).held  # 0.20
    assert not verdicts.robustness(meta, {"a": [0.40, 0.40], "b": [0.376, 0.376]}).held  # 0.024: within 0.005
    noisy = verdicts.robustness(meta, {"a": [0.40, 0.40], "b": [0.30, 0.36]})  # range 0.07, spread 0.03
    assert noisy.held and noisy.noise == pytest.approx(0.03) and noisy.margin == pytest.approx(0.05)
    assert not verdicts.robustness(meta, {"a": [0.40, 0.40], "b": [0.30, 0.40]}).held  # 0.05 - 0.02 < 0.05
    assert noisy.text == ("range of mean AP over 2 anchor sets: MetaAnchor 0.020, baseline 0.070, Δ +0.050 (the "
                          "baseline's minus MetaAnchor's: MetaAnchor varies less; beyond the noise 0.030; range per "
                          "seed: MetaAnchor 0.020, 0.020, baseline 0.100, 0.040)")
    wider = verdicts.robustness({"a": [0.40, 0.40], "b": [0.30, 0.30]}, meta)  # MetaAnchor's range 0.10 vs 0.02
    assert not wider.held and wider.margin == pytest.approx(-0.08)
    assert wider.text.endswith("Δ -0.080 (the baseline's minus MetaAnchor's: MetaAnchor varies more; beyond the noise "
                               "0.005; range per seed: MetaAnchor 0.100, 0.100, baseline 0.020, 0.020)")
    assert "range per seed" not in verdicts.robustness({"a": [0.4], "b": [0.3]}, {"a": [0.4], "b": [0.2]}).text


def test_search_report_compares_each_model_with_itself(tmp_path, synth_dirs):
    """The searched and the training set are scored on the same model, so the seeds' own spread (here 0.021
    per side) is not the noise: the verdicts are paired, and each found set states its own gain."""
    from research import search

    ctx = fake_ctx(tmp_path, synth_dirs, shift=lambda cfg: 0.04 * cfg["seed"])  # seed 1 scores 0.042 higher
    res = search.run(ctx)
    claims = dict(res["verdicts"])
    assert len(claims) == len(search.search_from(ctx))
    assert all(v.paired and v.noise == pytest.approx(verdicts.TIE) for v in claims.values())
    rows = list(csv.DictReader((tmp_path / "search" / "runs.csv").open()))
    ap = {(r["trained_with"], r["seed"], r["anchors"]): float(r["AP"]) for r in rows}
    text = (tmp_path / "search" / "README.md").read_text()
    for n in search.search_from(ctx):
        for seed in ("0", "1"):
            gain = ap[(n, seed, "searched")] - ap[(n, seed, "training set")]
            assert f"test AP {ap[(n, seed, 'searched')]:.3f}, {gain:+.3f} over the training set)" in text
    assert "the noise is the spread (half-range) of the per-seed differences" in text


def test_paired_verdicts_use_the_spread_of_per_seed_differences():
    # the same three models (one per seed) evaluated two ways: the models differ by seed far more than the
    # two evaluations of one model do, so only the paired rule sees the consistent gain
    searched, training = [0.40, 0.45, 0.50], [0.38, 0.42, 0.45]  # per-seed gains 0.02, 0.03, 0.05
    unpaired = verdicts.better(searched, training, "searched vs training set")
    assert not unpaired.held and not unpaired.paired
    assert unpaired.margin == pytest.approx(0.10 / 3) and unpaired.noise == pytest.approx(0.085)  # 0.05 + 0.035
    # ... but its text lists the per-seed differences, so the steady gain is visible beside the verdict
    assert unpaired.text == ("searched vs training set: 0.450 vs 0.417, Δ +0.033 (within the noise 0.085; "
                             "per seed Δ +0.020, +0.030, +0.050)")
    assert unpaired.per_seed == pytest.approx((0.02, 0.03, 0.05))
    paired = verdicts.better(searched, training, "searched vs training set", paired=True)
    assert paired.held and paired.paired and paired.per_seed == ()  # its differences are its noise, not a list
    assert paired.margin == pytest.approx(0.10 / 3) and paired.noise == pytest.approx(0.015)  # (0.05 - 0.02) / 2
    assert paired.text == ("searched vs training set: 0.450 vs 0.417, Δ +0.033 (beyond the paired noise "
                           "(spread of the per-seed differences) 0.015)")
    # one side lower on every seed by a steady amount: paired, that is a loss, not a tie
    assert not verdicts.at_least(training, searched, "x", paired=True).held
    assert verdicts.at_least(training, searched, "x").held
    assert verdicts.compare([0.40, 0.45], [0.40, 0.45], paired=True) == "tied"  # no difference at all: TIE
    with pytest.raises(ValueError, match="one value per seed on both sides, got 3 and 2"):
        verdicts.noise([0.4, 0.4, 0.4], [0.3, 0.3], paired=True)


def test_plateau_rule():
    assert plateau(FLAT) == (pytest.approx(0.003), True)
    assert plateau(RISING) == (pytest.approx(0.06), False)
    assert plateau([(100, 0.1), (200, 0.11), (1000, 0.3)])[1] is False  # one evaluation in the last 20 %: nan
    assert plateau([])[1] is False
    # exactly at the tolerance counts as flat; just above does not
    assert plateau([(800, 0.30), (900, 0.305), (1000, 0.31)]) == (pytest.approx(0.01), True)
    assert plateau([(800, 0.30), (900, 0.305), (1000, 0.3101)])[1] is False


def test_convergence_section_says_which_way_each_unconverged_run_moved(tmp_path):
    def run(key, seed, aps):
        curve = [[800 + 50 * i, ap] for i, ap in enumerate(aps)]
        return Run(key, tmp_path / key, {"seed": seed}, {}, recorded_curve=curve)

    flat, rising = run("a" * 16, 0, [0.500, 0.503, 0.501]), run("b" * 16, 1, [0.30, 0.33, 0.355, 0.35, 0.36])
    falling = run("c" * 16, 2, [0.393, 0.397, 0.391, 0.386])
    text = curves_section(tmp_path, {"baseline": [flat, rising], "MetaAnchor": [falling]}, "t")
    assert text.startswith("## Convergence\n\n1 of 3 runs passed the plateau rule")
    assert ("Failed the rule: `bbbbbbbb` (baseline, seed 1), rising over the tail (0.300 to 0.360): still learning; "
            "`cccccccc` (MetaAnchor, seed 2), falling from its tail's best (0.397 to 0.386): past its best, not "
            "still learning.") in text
    assert (tmp_path / "val_curves.png").is_file()
    assert "Failed the rule" not in curves_section(tmp_path, {"baseline": [flat]}, "t")


@pytest.mark.parametrize("bonus, held", [(0.02, True), (0.0, False), (0.004, False), (-0.02, False)],
                         ids=["metaanchor-better", "equal", "within-noise", "metaanchor-worse"])
def test_yolo_experiment_report_and_verdict(tmp_path, synth_dirs, bonus, held):
    train, _ = synth_dirs
    runner = YoloFakeRunner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None, train_dir=train,
                            bonus=lambda spec: bonus)
    res = yolo.run(Context(runner, [0, 1], tmp_path))
    d = tmp_path / "yolo"
    text = (d / "README.md").read_text()
    [(claim, v)] = res["verdicts"]
    assert v.held is held and v.margin == pytest.approx(bonus) and v.noise == pytest.approx(0.005)
    assert f"- **{claim}**: {'held' if held else 'did not hold'}. {v.text}." in text
    assert "would change" in text  # what would change the verdict
    # fake AP: 0.05 (+ bonus for MetaAnchor) + 0.002 per seed, two seeds: mean ± half-range
    k = yolo.YOLO_K
    assert f"| k-means k={k} (training) | {k} | 0.051 ± 0.001 | {0.051 + bonus:.3f} ± 0.001 |" in text
    assert "Seeds: 0, 1" in text and "wall time" in text
    rows = list(csv.DictReader((d / "runs.csv").open()))
    # per seed: baseline with its training set; MetaAnchor with k=5, k=3, k=9 and a scales/ratios set
    assert len(rows) == 2 * (1 + 4)
    assert {r["num_anchors"] for r in rows if r["anchors"].startswith("k-means")} == {"3", "5", "9"}
    assert {r["converged"] for r in rows} == {"True"}
    assert (d / "yolo_ap.png").read_bytes()[:4] == b"\x89PNG"
    for k in (3, 5, 9):
        assert len(AnchorSet.parse(str(d / f"kmeans{k}.yaml"))) == k


def test_yolo_experiment_trains_yolov2_with_the_kmeans_file(tmp_path, synth_dirs):
    from metaanchor.families.yolov2 import fit_yolo_anchors

    train, _ = synth_dirs
    runner = YoloFakeRunner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None, train_dir=train)
    yolo.run(Context(runner, [0, 1], tmp_path))
    assert len(runner.configs) == 4
    assert {(c["model"]["head"], c["anchors"]["sample"], c["seed"]) for c in runner.configs} == {
        ("predefined", False, 0), ("metaanchor", True, 0), ("predefined", False, 1), ("metaanchor", True, 1)}
    files = {c["anchors"]["train"] for c in runner.configs}
    assert len(files) == 1  # baseline and MetaAnchor: the same k-means anchors
    # MICRO's 64 px input is raised to YOLO_MIN_INPUT (256); the synth images are 128 px: boxes x2
    expected = fit_yolo_anchors(train, k=5, scale=yolo.YOLO_MIN_INPUT / 128)
    for c in runner.configs:
        assert c["model"]["arch"] == "yolov2"
        assert c["input"]["size"] == yolo.YOLO_MIN_INPUT
    assert AnchorSet.parse(files.pop()) == expected


def test_yolo_quick_scale_is_the_demo_config(tmp_path):
    from metaanchor.config import load_config
    from research.__main__ import NAMES
    from research.runner import QUICK
    from research.suite import EXPERIMENTS
    from research.yolo import yolo_overrides

    assert "yolo" in EXPERIMENTS and tuple(EXPERIMENTS) == NAMES
    runner = FakeRunner(tmp_path, QUICK, device="cpu", log=lambda s: None)
    cfg = runner.config("metaanchor", "3x3", 0, extra=yolo_overrides(QUICK))
    demo = load_config("configs/yolo_demo.yaml", [])
    for section, key in (("model", "arch"), ("model", "backbone"), ("model", "fpn_channels"),
                         ("model", "head_convs"), ("model", "hidden_dim"), ("input", "size"), ("solver", "lr"),
                         ("solver", "batch_size"), ("solver", "warmup_iters"), ("solver", "max_iter")):
        assert cfg[section][key] == demo[section][key], (section, key)


def test_yolo_input_gives_at_least_an_8x8_grid():
    from dataclasses import replace

    from research.runner import BCCD, CONVERGED
    from research.yolo import yolo_overrides

    def size(scale):
        return [o for o in yolo_overrides(scale) if o.startswith("input.size=")]

    assert CONVERGED.image_size == 128 and size(CONVERGED) == ["input.size=256"]  # stride 32: 8 x 8, not 4 x 4
    assert size(replace(CONVERGED, image_size=320)) == ["input.size=320"]  # large enough already: unchanged
    assert size(BCCD) == ["input.size=384"]


def test_config_key_makes_anchor_file_paths_relative(tmp_path):
    runner = Runner(tmp_path, MICRO, device="cpu", train_fn=CountingTrain(), log=lambda s: None)
    a = runner.config("predefined", str(tmp_path / "anchors" / "k5.yaml"), seed=0, sample=False)
    b = json.loads(json.dumps(a))
    b["anchors"]["train"] = "anchors/k5.yaml"
    assert config_key(a, tmp_path) == config_key(b, tmp_path)
