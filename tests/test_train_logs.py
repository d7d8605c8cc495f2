"""What `metaanchor train` prints: a banner, one plain line per log period (a file reads like a terminal),
one warning per self-defeating setting, solver.epochs, results.png and the final line."""

import re
import warnings

import pytest
import torch
from conftest import TINY, assert_user_error, cli

from metaanchor.config import load_config
from metaanchor.engine import train as train_mod
from metaanchor.engine.preflight import self_defeating_settings
from metaanchor.engine.run_log import format_duration, progress_line
from metaanchor.errors import ConfigError

NUMBER = r"\d+\.\d{3}"
LINE = re.compile(rf"iter (\d+)/(\d+) \(epoch (\d+)/(\d+)\)  loss {NUMBER}  cls {NUMBER}  box {NUMBER}  "
                  r"lr \S+  \d+\.\d img/s  ETA (\d+s|\d+m\d\ds|\d+h\d\dm)")
QUIET = ["solver.warmup_iters=1"]  # no warm-up warning


def log_lines(out: str) -> list[re.Match]:
    return [m for m in map(LINE.fullmatch, out.splitlines()) if m]


@pytest.mark.parametrize("flag", [[], ["--no-progress"]])
def test_a_file_gets_one_plain_line_per_log_period_with_or_without_progress(capsys, tmp_path, dataset, flag):
    code, out, err = cli(capsys, "train", *flag, "--out", tmp_path / "run", f"data.train={dataset}", *TINY,
                         *QUIET, "solver.max_iter=5", "log.period=2")
    assert code == 0, err
    lines = log_lines(out)
    assert [m.group(1, 2, 3, 4) for m in lines] == [("2", "5", "1", "3"), ("4", "5", "2", "3"), ("5", "5", "3", "3")]
    assert lines[-1].group(5) == "0s"
    assert "\r" not in out + "".join(err) and "\x1b" not in out + "".join(err)
    assert err == []


def test_the_banner_is_printed_once_and_names_the_run(capsys, tmp_path, synth_dirs):
    from metaanchor.families.retinanet import RetinaNetDetector

    train, val = synth_dirs
    run = tmp_path / "run"
    code, out, err = cli(capsys, "train", "--out", run, f"data.train={train}", f"data.val={val}", *TINY, *QUIET,
                         "solver.max_iter=2", "anchors.eval=[2x2]")
    assert code == 0, err
    params = sum(p.numel() for p in RetinaNetDetector.from_checkpoint(run / "last.pt").parameters())
    assert out.splitlines()[:8] == [
        "device:     cpu",
        "AMP:        off",
        f"model:      retinanet, backbone tiny, head metaanchor, {params:,} parameters",
        "anchors:    3x3, sampled (jitter scale 0.5, ratio 0.5); also evaluated: 2x2",
        "train data: 48 images, 3 classes",
        "val data:   16 images, 3 classes",
        "schedule:   2 iterations (1 epochs x 24), batch 2, lr 0.01, warm-up 1, cosine",
        f"output:     {run}",
    ]
    assert out.count("device:") == 1


def test_a_terminal_keeps_the_bar_and_gets_the_lines_above_it(capsys, tmp_path, dataset, monkeypatch):
    monkeypatch.setattr(train_mod, "_is_terminal", lambda stream: True)
    cfg = load_config(None, [f"data.train={dataset}", *TINY, *QUIET, "solver.max_iter=3"])
    train_mod.train(cfg, tmp_path / "run")
    out, err = capsys.readouterr()
    assert [m.group(1) for m in log_lines(out)] == ["1", "2", "3"]
    assert "train: 100%" in err and "\r" in err  # the bar, redrawn in place on stderr


def test_settings_that_defeat_themselves_are_one_warning_line_each(capsys, tmp_path, dataset):
    code, _, err = cli(capsys, "train", "--no-progress", "--out", tmp_path / "run", f"data.train={dataset}",
                       f"data.val={dataset}", *TINY, "solver.max_iter=2", "solver.batch_size=6", "eval.period=3")
    assert code == 0, err
    assert err == [
        "warning: solver.warmup_iters=100 >= solver.max_iter=2: training ends during warm-up; lr peaks at 0.0001, "
        "not solver.lr=0.01",
        "warning: eval.period=3 > solver.max_iter=2: no validation before the final one",
        "warning: solver.batch_size=6 is larger than the training set (4 images): every batch holds at most 4 images",
    ]


def test_sensible_settings_warn_nothing(dataset):
    cfg = load_config(None, [f"data.train={dataset}", f"data.val={dataset}", *TINY, "solver.max_iter=200",
                             "eval.period=200"])
    assert self_defeating_settings(cfg, 4) == []
    cfg["solver"]["warmup_iters"] = 200
    assert len(self_defeating_settings(cfg, 4)) == 1


def test_epochs_sets_max_iter_from_the_training_set(capsys, tmp_path, dataset):
    run = tmp_path / "run"
    cfg = load_config(None, [f"data.train={dataset}", *TINY, *QUIET, "solver.epochs=3"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = train_mod.train(cfg, run, progress=False)
    assert summary["iterations"] == 6  # 4 images, batch 2: 2 iterations per epoch
    out = capsys.readouterr().out
    assert "schedule:   6 iterations (3 epochs x 2)" in out
    assert [m.group(1, 3, 4) for m in log_lines(out)][-1] == ("6", "3", "3")
    saved = load_config(run / "config.yaml")
    assert (saved["solver"]["max_iter"], saved["solver"]["epochs"]) == (6, 0)


def test_epochs_and_max_iter_together_are_one_line_error(capsys, tmp_path, dataset):
    message = "config keys solver.epochs=3 and solver.max_iter=50: set one of them, not both"
    with pytest.raises(ConfigError, match=f"^{message}$"):
        load_config(None, ["solver.epochs=3", "solver.max_iter=50"])
    line = assert_user_error(capsys, ["train", "--out", tmp_path / "run", f"data.train={dataset}", *TINY,
                                      "solver.epochs=3", "solver.max_iter=50"])
    assert line == f"metaanchor train: error: {message}"


def test_results_png_is_drawn_beside_val_curve_and_the_final_line_lists_what_exists(capsys, tmp_path, dataset):
    run = tmp_path / "run"
    code, out, err = cli(capsys, "train", "--no-progress", "--out", run, f"data.train={dataset}",
                         f"data.val={dataset}", *TINY, *QUIET, "solver.max_iter=2")
    assert code == 0, err
    for name in ("results.png", "val_curve.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = [n for n in ("pr_curve.png", "val_curve.png", "results.png", "summary.json") if (run / n).is_file()]
    assert out.splitlines()[-1].endswith("; per-class table, " + ", ".join(written) + " in the run folder")


def test_results_png_without_validation_shows_the_losses(tmp_path):
    from metaanchor.visualize import plot_results

    csv = tmp_path / "metrics.csv"
    csv.write_text("iter,lr,loss,cls,box\n1,0.01,2.0,1.5,0.5\n2,0.01,1.5,1.0,0.5\n")
    assert plot_results(csv, tmp_path / "r.png") == tmp_path / "r.png"
    csv.write_text("iter,lr,loss,cls,box\n")
    assert plot_results(csv, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_durations_and_the_log_line_format():
    assert [format_duration(s) for s in (0, 4.6, 65, 1265, 3725, -3)] == ["0s", "5s", "1m05s", "21m05s", "1h02m",
                                                                          "0s"]
    line = progress_line(40, 1100, 26, {"loss": 0.9124, "cls": 0.611, "box": 0.3011}, 0.01, 12.34, 1265)
    assert line == "iter 40/1100 (epoch 2/43)  loss 0.912  cls 0.611  box 0.301  lr 0.01  12.3 img/s  ETA 21m05s"
    assert progress_line(1, 2, 1, {"loss": 1.0}, 0.01, 1.0, 1, skipped=2).endswith("ETA 1s  skipped 2")


def test_cpu_bf16_trains_under_bfloat16_autocast_only_on_a_cpu_that_has_it(capsys, tmp_path, dataset, monkeypatch):
    import metaanchor.families.retinanet.detector as det_mod

    seen = []
    real = det_mod.detection_loss

    def loss(*a, **k):  # the autocast state the model's forward runs under
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return real(*a, **k)

    monkeypatch.setattr(det_mod, "detection_loss", loss)
    args = ["train", "--no-progress", f"data.train={dataset}", *TINY, *QUIET, "solver.max_iter=1",
            "solver.cpu_bf16=true"]
    monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda: False)
    code, out, err = cli(capsys, *args, "--out", tmp_path / "fp32")
    assert code == 0, err
    assert ("solver.cpu_bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), where bf16 convolutions run "
            "far slower than float32; training in float32") in out
    assert "AMP:        off" in out and seen == [None]
    monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda: True)
    code, out, err = cli(capsys, *args, "--out", tmp_path / "bf16")
    assert code == 0, err
    assert "AMP:        bf16" in out and "no native bfloat16" not in out and seen == [None, torch.bfloat16]
