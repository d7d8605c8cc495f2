"""The torchvision comparison: every documented key, post-processing timed on the model's own head outputs,
the real-data comparison's interleaving, and `metaanchor bench` naming the script. Nothing asserts on timing."""

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import compare_torchvision as bench
import pytest
import torch
from compare_torchvision_train import Interleave

from metaanchor.families.retinanet import RetinaNetDetector as Detector

SCRIPT = Path(bench.__file__)


def test_bench_tiny_configuration_reports_all_keys():
    report = bench.run_bench(bench.BenchConfig.tiny(), log=lambda *_: None)
    for key in ("inference_speedup_b1", "inference_speedup_b8", "train_step_speedup", "postprocess_share",
                "peak_mem_ratio", "flop_efficiency"):
        assert math.isfinite(report[key]) and report[key] > 0, key
    result = report["backbones"]["tiny"]
    assert set(result["inference"]) == {"default", "many"}
    for rows in result["inference"].values():
        for row in rows.values():
            assert all(math.isfinite(v) for v in row.values())
    costs = result["metaanchor"]
    assert costs["generate_new_anchor_set_first_s"] > 0 and costs["generate_cached_s"] > 0
    assert "ours img/s" in bench.format_table(report)


def test_timed_postprocessing_gives_the_models_own_detections():
    torch.manual_seed(0)
    model = Detector(3, backbone="tiny", fpn_channels=16, head_convs=1, min_size=96, max_size=96).eval()
    model.score_thresh = 0.0  # every candidate goes through decoding and NMS
    images = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.inference_mode():
        want = model(images)
    got = bench._postprocess(model, images)()  # 96 px images at a 96 px input: batch pixels are image pixels
    assert len(got) == 2
    for g, w in zip(got, want):
        assert len(w["boxes"]) == 100
        for k in ("boxes", "scores", "labels"):
            torch.testing.assert_close(g[k], w[k])


def test_real_data_comparison_alternates_and_flips_the_order_every_round():
    events = []

    def make_tv(num_classes):
        assert num_classes == 3

        def tv():
            events.append("tv")
        return tv

    rounds, steps = 4, 2
    cb = Interleave(rounds, steps, 2, make_tv, log=lambda s: None)
    trainer = SimpleNamespace(train_set=SimpleNamespace(class_names=["a", "b", "c"]))
    for it in range(1 + rounds * steps):
        events.append(f"ours {it}")
        cb.after_step(trainer, it, {"loss": 1.0})
    tv_steps = ["tv"] * steps
    assert events == ["ours 0", "tv",  # warm-up
                      "ours 1", "ours 2", *tv_steps,  # round 1: ours, tv
                      *tv_steps, "ours 3", "ours 4",  # round 2: tv, ours
                      "ours 5", "ours 6", *tv_steps,  # round 3: ours, tv
                      *tv_steps, "ours 7", "ours 8"]  # round 4: tv, ours
    assert len(cb.times["ours"]) == len(cb.times["tv"]) == rounds


def test_bad_arguments_are_one_line_errors(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--train-data", str(tmp_path)], capture_output=True,
                         text=True)
    assert run.returncode == 2
    assert run.stderr == (f"python benchmarks/compare_torchvision.py: error: --train-data {tmp_path}: not a dataset "
                          "folder (no annotations.json; convert one with metaanchor data convert)\n")
    assert bench.main(["--device", "tpu"]) == 2


@pytest.mark.parametrize("argv, command", [
    (["bench", "--quick", "--json-out", "b.json"],
     "python benchmarks/compare_torchvision.py --quick --json-out b.json"),
    (["bench", "--help"], "python benchmarks/compare_torchvision.py --help"),
])
def test_metaanchor_bench_names_the_script(argv, command, capsys):
    from metaanchor.cli import main as metaanchor

    assert metaanchor(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == ("metaanchor bench: error: the comparison with torchvision lives outside the "
                                 f"installed package: run '{command}' from a checkout\n")
