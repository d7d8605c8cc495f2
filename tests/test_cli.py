"""The command line end to end, in subprocesses, as a user runs it."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
        "input.size=128", "solver.batch_size=4", "solver.warmup_iters=5", "eval.batch_size=8", "log.period=5",
        "device=cpu"]


def run(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "metaanchor", *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.mark.slow
def test_synth_train_eval_predict_end_to_end(tmp_path):
    data = tmp_path / "data"
    run("data", "synth", "--out", data, "--images", 24, "--distribution", "small", "max_objects=3", "--seed", 3)
    ann = json.loads((data / "annotations.json").read_text())
    assert len(ann["images"]) == 24 and len(list((data / "images").iterdir())) == 24
    assert all(8 <= (a["bbox"][2] * a["bbox"][3]) ** 0.5 <= 40 for a in ann["annotations"])

    out = tmp_path / "run"
    p = run("train", "--out", out, "--no-progress", f"data.train={data}", f"data.val={data}", "solver.max_iter=12",
            "anchors.eval=[5x5]", "eval.score_thresh=0.001", *TINY)
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.csv"):
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["iter"]) for r in rows if r["loss"]] == [5, 10, 12]
    assert rows[-1]["AP"] != ""  # final evaluation row
    assert "3x3" in p.stdout and "5x5" in p.stdout  # summary table with both anchor sets

    metrics_file = tmp_path / "m.json"
    p = run("eval", "--checkpoint", out / "last.pt", "--data", data / "annotations.json", "--images",
            data / "images", "--anchors", "1x3", "--json-out", metrics_file, "--device", "cpu")
    m = json.loads(metrics_file.read_text())
    for k in ("AP", "AP50", "AP75", "APs"):
        assert 0.0 <= m[k] <= 1.0
    assert m["APl"] is None  # boxes of 8-40 px: no large objects, APl undefined (null, not 0)
    assert m["anchors"] == "1x3" and "Average Precision" in p.stdout

    pred = tmp_path / "pred"
    run("predict", "--checkpoint", out / "last.pt", "--anchors", "5x5", "--out", pred, "--score-thresh", 0.05,
        "--device", "cpu", data / "images" / "000000.png", data / "images" / "000001.png")
    dets = json.loads((pred / "detections.json").read_text())
    assert {Path(d["file_name"]).name for d in dets} <= {"000000.png", "000001.png"}
    assert all(len(d["bbox"]) == 4 and 0.05 <= d["score"] <= 1 for d in dets)
    assert sorted(f.name for f in pred.glob("*.png")) == ["000000_det.png", "000001_det.png"]


@pytest.mark.slow
@pytest.mark.parametrize("args,fragment", [
    (["train", "solver.max_iter=abc"], "solver.max_iter: expected int"),
    (["train", "model.head=predefined"], "data.train is not set"),
    (["eval", "--checkpoint", "nope.pt", "--data", "x"], "nope.pt: file not found"),
    (["anchors", "show", "3x0"], "number of ratios 0"),
    (["data", "synth", "--out", "x", "--distribution", "huge"], "huge"),
    (["predict", "--checkpoint", "x.pt"], "the following arguments are required: IMAGE"),
])
def test_user_mistakes_exit_2_with_one_line(args, fragment, tmp_path):
    p = subprocess.run([sys.executable, "-m", "metaanchor", *args], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in p.stderr


def test_help_lists_every_command():
    out = run("--help").stdout
    for cmd in ("train", "eval", "predict", "data", "anchors", "demo"):
        assert cmd in out
    assert "KEY=VALUE" in run("train", "--help").stdout
