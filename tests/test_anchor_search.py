"""Anchor fitting (k-means) and anchor search, from the library and the `anchors` command."""

import math

import numpy as np
import pytest
from conftest import tiny_detector

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


@pytest.mark.parametrize("argv", [["anchors", "search", "--help"], ["anchors", "fit", "--help"]])
def test_cli_help(argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0


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


def test_anchor_search_scores_an_undefined_ap_as_worst():
    scores = {"scales=1;ratios=1": None}
    res = search_anchors(lambda spec: scores.get(spec, 0.1), (1.0,), (1.0,), budget=4)
    assert res.tried[0][1] == float("-inf") and res.best[1] == 0.1


@pytest.fixture(scope="module")
def search_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "m.pt"
    tiny_detector(class_names=["circle", "square", "triangle"]).save(path)
    return path


def _one_line_error(capsys, args, *fragments):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err  # one line, no traceback
    assert err[0].startswith("metaanchor anchors: error: "), err[0]
    for f in fragments:
        assert f in err[0], err[0]
    return err[0]


def test_anchor_search_refuses_a_start_set_larger_than_the_search_allows(tmp_path, capsys, synth_dirs, search_ckpt):
    train, val = synth_dirs
    kmeans = tmp_path / "k9.json"
    assert main(["anchors", "fit", "--data", str(train), "--num", "9", "--out", str(kmeans)]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["anchors", "search", "--checkpoint", search_ckpt, "--data", val, "--device", "cpu",
                             "--start", kmeans, "--out", tmp_path / "found.json"],
                    f"--start {kmeans}", "81 anchors", "at most 25")
    assert not (tmp_path / "found.json").exists()


def test_anchor_search_budget_must_be_positive(tmp_path, capsys, synth_dirs, search_ckpt):
    _, val = synth_dirs
    msg = _one_line_error(capsys, ["anchors", "search", "--checkpoint", search_ckpt, "--data", val, "--device", "cpu",
                                   "--budget", "0", "--out", tmp_path / "found.json"])
    assert msg.endswith("--budget 0: must be at least 1")


def test_anchor_search_with_a_valid_start_and_budget_runs(tmp_path, capsys, synth_dirs, search_ckpt):
    _, val = synth_dirs
    out = tmp_path / "found.json"
    assert main(["anchors", "search", "--checkpoint", str(search_ckpt), "--data", str(val), "--device", "cpu",
                 "--start", "2x2", "--budget", "1", "--out", str(out)]) == 0
    assert "best: scales=" in capsys.readouterr().out and out.is_file()
