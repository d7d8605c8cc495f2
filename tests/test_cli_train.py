"""`metaanchor train` end to end (in-process): bad data and arguments, resume, summary table and files."""

import csv
import json

from conftest import CAT_IDS, TINY, cli

from metaanchor.cli import main
from metaanchor.cli.train import print_summary
from metaanchor.families.retinanet import RetinaNetDetector as Detector


def test_training_table_csv_and_best_checkpoint_with_undefined_metrics(tmp_path, capsys, small_objects):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", f"data.train={small_objects}",
                 f"data.val={small_objects}", "solver.max_iter=2", "eval.score_thresh=0.0", *TINY]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert rows[-1]["APl"] == rows[-1]["ARl"] == "" and rows[-1]["AP"] != ""
    assert (out / "best.pt").is_file()
    table = capsys.readouterr().out.splitlines()
    header = next(i for i, ln in enumerate(table) if ln.startswith("anchors") and ln.rstrip().endswith("APl"))
    assert table[header + 1].split()[-1] == "n/a"


def test_print_summary_shows_undefined_metrics_as_na(capsys):
    m = {"AP": 0.25, "AP50": 0.5, "AP75": 0.2, "APs": 0.1, "APm": None, "APl": None}
    print_summary({"iterations": 3, "wall_time_s": 1.0, "metrics": {"3x3": m}}, "runs/x")
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row == ["3x3", "0.250", "0.500", "0.200", "0.100", "n/a", "n/a"]


def test_training_keeps_the_datasets_category_ids(capsys, tmp_path, odd_ids_dataset):
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--no-progress", "--out", run, f"data.train={odd_ids_dataset}", *TINY,
                       "solver.max_iter=1")
    assert code == 0, err
    model = Detector.from_checkpoint(run / "last.pt")
    assert model.category_ids == CAT_IDS
    cats = json.loads((odd_ids_dataset / "annotations.json").read_text())["categories"]
    assert model.class_names == [c["name"] for c in cats]
