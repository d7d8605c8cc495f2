"""`metaanchor train` end to end (in-process): bad data and arguments, resume, summary table and files."""

import csv
import json

from conftest import CAT_IDS, TINY, ann, assert_user_error, cli, write_ann

from metaanchor import checkpoint as ckpt
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


def test_resume_with_weights_of_another_model_names_the_tensor(capsys, tmp_path, dataset):
    run = tmp_path / "run"
    assert cli(capsys, "train", "--no-progress", "--out", run, f"data.train={dataset}", *TINY,
               "solver.max_iter=1")[0] == 0
    assert_user_error(capsys, ["train", "--no-progress", "--resume", "--out", run, f"data.train={dataset}", *TINY,
                               "solver.max_iter=2", "model.fpn_channels=24"],
                      f"checkpoint {run / 'last.pt'}: weights do not fit the model", "size mismatch")


def test_unreadable_training_image_is_an_error_or_a_counted_skip(capsys, copy_of, tmp_path):
    bad = copy_of / "images" / ann(copy_of)["images"][2]["file_name"]
    bad.write_bytes(bad.read_bytes()[:80])
    args = [f"data.train={copy_of}", *TINY, "solver.max_iter=2"]
    assert_user_error(capsys, ["train", "--no-progress", "--out", tmp_path / "a", *args], str(bad),
                      "cannot read image", "data.skip_invalid=true")
    code, out, err = cli(capsys, "train", "--no-progress", "--out", tmp_path / "b", *args, "data.skip_invalid=true")
    err = [e for e in err if not e.startswith("warning: ")]
    assert code == 0 and err == [f"skipped training image: {bad}: " + err[0].split(f"{bad}: ", 1)[1]]
    assert_user_error(capsys, ["train", "--no-progress", "--fail-fast", "--out", tmp_path / "c", *args,
                               "data.skip_invalid=true"], str(bad))


def test_train_fail_fast_turns_a_repaired_annotation_into_an_error(capsys, copy_of, tmp_path):
    data = ann(copy_of)
    data["annotations"][0]["bbox"] = [-20.0, 10.0, 40.0, 5.0]
    write_ann(copy_of, data)
    args = ["--out", tmp_path / "r", f"data.train={copy_of}", *TINY, "solver.max_iter=1", "data.skip_invalid=true"]
    assert cli(capsys, "train", "--no-progress", *args)[0] == 0
    assert_user_error(capsys, ["train", "--no-progress", "--fail-fast", *args], "annotations.json",
                      f"annotation id {data['annotations'][0]['id']}", "outside the 128x128 image")


def test_resume_without_a_checkpoint_starts_fresh_and_cleans_stale_temp_files(capsys, dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    code, out, _ = cli(capsys, "train", "--no-progress", "--resume", "--out", run, f"data.train={dataset}", *TINY,
                       "solver.max_iter=1")
    assert code == 0 and f"no checkpoint {run / 'last.pt'} yet; starting from iteration 0" in out
    assert not list(run.glob("*.tmp")) and ckpt.load(run / "last.pt")["iteration"] == 1


def test_a_second_run_never_touches_the_first_runs_folder(capsys, tmp_path, dataset):
    import hashlib

    def hashes(folder):
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.rglob("*")) if f.is_file()}

    run = tmp_path / "run"
    args = ["train", "--no-progress", "--out", run, f"data.train={dataset}", f"data.val={dataset}", *TINY]
    assert cli(capsys, *args, "solver.max_iter=2")[0] == 0
    first = hashes(run)
    assert {"last.pt", "best.pt", "config.yaml", "metrics.csv"} <= set(first)
    code, out, err = cli(capsys, *args, "solver.max_iter=1", "solver.lr=0.02")
    assert code == 0, err
    assert out.splitlines()[0].endswith(f"this run goes to {tmp_path / 'run2'} (--resume continues that run, "
                                        "--exist-ok writes into it)")
    assert hashes(run) == first and (tmp_path / "run2" / "last.pt").is_file()
    assert cli(capsys, *args, "solver.max_iter=1")[0] == 0 and (tmp_path / "run3" / "last.pt").is_file()
    assert hashes(run) == first
    assert cli(capsys, *args, "solver.max_iter=1", "--exist-ok")[0] == 0
    assert hashes(run)["last.pt"] != first["last.pt"] and not (tmp_path / "run4").exists()
