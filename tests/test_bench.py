"""``metaanchor bench``: the comparison's ratios and report keys, post-processing timed on the model's own outputs,
the checkpoint-in-each-format table, the options. Nothing asserts on timing."""

import json
import math

import pytest
import torch
from conftest import cli

from metaanchor.engine.bench import timing
from metaanchor.engine.bench.compare import postprocessing, run_bench
from metaanchor.engine.bench.config import BenchConfig
from metaanchor.engine.bench.formats import FormatRow, format_formats
from metaanchor.engine.bench.report import HEADLINE_KEYS, format_table
from metaanchor.families.retinanet import RetinaNetDetector as Detector


def test_ratio_is_the_median_of_per_round_ratios_with_its_spread():
    times = {"tv": [2.0, 3.0, 9.0, 4.0, 1.0], "ours": [1.0, 1.0, 3.0, 1.0, 1.0]}  # ratios 2, 3, 3, 4, 1
    assert timing.ratio_stats(times) == {"median": 3.0, "min": 1.0, "max": 4.0}
    assert timing.ratio_stats(times, "tv", "ours")["median"] == pytest.approx(1 / 3)


def test_rounds_alternate_the_order_after_the_warmup():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = timing.interleaved(fns, rounds=3, device="cpu", warmup=1)
    assert calls == list("abc") + list("abc") + list("cba") + list("abc")
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}


@pytest.mark.slow
def test_tiny_comparison_reports_every_key():
    cfg = BenchConfig.tiny()
    report = run_bench(cfg, log=lambda *_: None)
    for key in HEADLINE_KEYS:
        assert math.isfinite(report[key]) and report[key] > 0, key
    result = report["backbones"]["tiny"]
    assert set(result["inference"]) == {"default", "many"}
    for rows in result["inference"].values():
        assert set(rows) == {"b1", "b2"}
        for row in rows.values():
            assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"]
            assert all(math.isfinite(v) for v in row.values())
    train = result["train"]["b2"]
    assert train["speedup_min"] <= train["speedup"] <= train["speedup_max"]
    assert train["peak_mem_bytes"]["tv"] > 0 and train["peak_mem_bytes"]["ours"] > 0
    assert report["config"]["amp"] is False  # CPU: float32 on both sides
    table = format_table(report)
    assert "ours img/s" in table and "train step batch 2" in table and "load average" in table


def test_config_checks_its_values():
    with pytest.raises(ValueError, match="rounds=0"):
        BenchConfig(rounds=0).check()
    with pytest.raises(ValueError, match="batch sizes must be at least 1"):
        BenchConfig(infer_batches=(1, 0)).check()
    assert BenchConfig(device="cuda").use_amp and not BenchConfig(device="cuda", amp=False).use_amp
    assert not BenchConfig().use_amp


def test_timed_postprocessing_gives_the_models_own_detections():
    torch.manual_seed(0)
    model = Detector(3, backbone="tiny", fpn_channels=16, head_convs=1, min_size=96, max_size=96).eval()
    model.score_thresh = 0.0  # every candidate goes through decoding and NMS
    images = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.inference_mode():
        want = model(images)
    got = postprocessing(model, images, amp=False)()  # 96 px images at a 96 px input: batch pixels are image pixels
    assert len(got) == 2
    for g, w in zip(got, want):
        assert len(w["boxes"]) == 100
        for k in ("boxes", "scores", "labels"):
            torch.testing.assert_close(g[k], w[k])


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        cli(capsys, "bench", "--help")
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("(default 5; --quick 2)", "(default resnet50 resnet18; --quick resnet18)", "(default: 512)",
                 "(default: 1 8)", "(default 4; --quick 2)", "(default: pytorch,onnx,pt2,torchscript)",
                 "(default: auto)"):
        assert text in out, text


def test_quick_options_override_its_configuration():
    from metaanchor.cli.bench import bench_config
    from metaanchor.cli.main import build_parser

    args = build_parser().parse_args(["bench", "--quick", "--device", "cpu", "--size", "800", "--batches", "8", "16",
                                      "--train-batches", "8", "16", "--backbone", "resnet50", "--rounds", "3"])
    cfg = bench_config(args)
    assert (cfg.backbones, cfg.size, cfg.infer_batches, cfg.train_batches, cfg.rounds) == (
        ("resnet50",), 800, (8, 16), (8, 16), 3)
    assert bench_config(build_parser().parse_args(["bench", "--quick", "--device", "cpu"])).rounds == 2


@pytest.mark.parametrize("args, message", [
    (["--rounds", "0"], "--rounds 0: must be at least 1"),
    (["--batches", "1", "0"], "--batches [1, 0]: batch sizes must be at least 1"),
    (["--train-batches", "0"], "--train-batches [0]: batch sizes must be at least 1"),
    (["--images", "x.png"], "--images goes with --checkpoint"),
    (["--checkpoint", "m.pt"], "--checkpoint: give the images to time on, either --images IMAGE... or --data"),
])
def test_bad_options_are_one_line_errors(args, message, capsys):
    code, out, err = cli(capsys, "bench", "--device", "cpu", *args)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_unknown_format_is_named(model_ckpt, synth_dirs, capsys):
    image = sorted((synth_dirs[1] / "images").iterdir())[0]
    code, _, err = cli(capsys, "bench", "--checkpoint", model_ckpt, "--images", image, "--formats", "pytorch,tflite",
                       "--device", "cpu")
    assert code == 2 and err == ["metaanchor bench: error: --formats: unknown format 'tflite'; choose from pytorch, "
                                 "onnx, pt2, torchvision, torchscript"]


@pytest.mark.slow
def test_checkpoint_in_each_format_on_two_images(model_ckpt, synth_dirs, tmp_path, capsys):
    images = sorted((synth_dirs[1] / "images").iterdir())[:2]
    out_json = tmp_path / "formats.json"
    code, out, err = cli(capsys, "bench", "--checkpoint", model_ckpt, "--images", *images, "--rounds", "1",
                         "--formats", "pytorch,onnx,torchscript,torchvision", "--device", "cpu",
                         "--json-out", out_json)
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out_json.read_text())["rows"]}
    assert list(rows) == ["pytorch", "onnx", "torchscript", "torchvision"]
    for name in ("pytorch", "onnx", "torchscript"):
        assert rows[name]["images_per_s"] > 0 and rows[name]["size_mb"] > 0 and rows[name]["ap"] is None
    assert rows["torchvision"]["note"] == "skipped: no runner for this format in metaanchor.deploy"
    assert "2 images timed, 1 rounds" in out
    assert "torchvision: skipped: no runner" in out


@pytest.mark.slow
def test_checkpoint_formats_with_data_give_the_same_metrics(synth_dirs, tmp_path, capsys):
    from conftest import tiny_detector

    from metaanchor.engine.evaluate import METRIC_KEYS

    ckpt, out_json = tmp_path / "low.pt", tmp_path / "formats.json"
    tiny_detector(class_names=["a", "b", "c"], score_thresh=0.0).save(ckpt)  # untrained: every candidate is kept
    code, out, err = cli(capsys, "bench", "--checkpoint", ckpt, "--data", synth_dirs[1], "--rounds", "1",
                         "--formats", "pytorch,onnx", "--device", "cpu", "--json-out", out_json)
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out_json.read_text())["rows"]}
    assert rows["pytorch"]["metrics"]["AR100"] > 0  # the untrained model finds some boxes: a real comparison
    for key in METRIC_KEYS:  # the exported model detects the same boxes as PyTorch
        assert rows["onnx"]["metrics"][key] == pytest.approx(rows["pytorch"]["metrics"][key], abs=1e-3), key
    assert "AP on 16 images of" in out


def test_format_table_names_skipped_formats():
    rows = [FormatRow("pytorch", "cpu", 2.0, 10.0, 9.0, 11.0, 0.5, 0.75), FormatRow("pt2", note="skipped: why")]
    table = format_formats(rows).splitlines()
    assert table[1].split() == ["pytorch", "cpu", "2.0", "10.00", "(9.00..11.00)", "0.500", "0.750"]
    assert table[2].split() == ["pt2", "-", "-", "-", "n/a", "n/a"]
    assert table[3] == "pt2: skipped: why"


def _hand_made_coco():
    from pycocotools.coco import COCO

    images = [{"id": i, "width": 200, "height": 150, "file_name": f"{i}.png"} for i in (1, 2, 3)]
    boxes = [(1, 1, [10, 10, 20, 20]), (1, 2, [50, 40, 60, 50]), (2, 1, [5, 5, 120, 100]),
             (2, 1, [130, 20, 30, 30]), (3, 2, [0, 0, 15, 8])]  # (image, category, xywh): small, medium, large
    anns = [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for k, (i, c, b) in enumerate(boxes)]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]}
    gt.createIndex()
    results = [{"image_id": 1, "category_id": 1, "bbox": [11, 10, 20, 19], "score": 0.9},
               {"image_id": 1, "category_id": 2, "bbox": [52, 42, 60, 50], "score": 0.8},
               {"image_id": 1, "category_id": 2, "bbox": [100, 100, 30, 30], "score": 0.85},
               {"image_id": 2, "category_id": 1, "bbox": [10, 10, 110, 90], "score": 0.7},
               {"image_id": 2, "category_id": 3, "bbox": [130, 20, 30, 30], "score": 0.6},
               {"image_id": 3, "category_id": 2, "bbox": [1, 0, 14, 9], "score": 0.3}]
    return gt, results


def test_faster_coco_eval_gives_pycocotools_metrics_on_a_hand_made_case():
    pytest.importorskip("faster_coco_eval")
    from metaanchor.engine.evaluate import METRIC_KEYS, coco_metrics

    gt, results = _hand_made_coco()
    ours, ref = (coco_metrics(gt, results, backend=b) for b in ("faster-coco-eval", "pycocotools"))
    assert ref["AP"] is not None and 0 < ref["AP"] < 1 and ref["APl"] is not None
    for key in METRIC_KEYS:  # equal up to pycocotools' tp / (tp + fp + 2.2e-16)
        assert ours[key] == pytest.approx(ref[key], abs=1e-15), key
    assert [r["class"] for r in ours["per_class_table"]] == ["a", "b", "c"]
    for a, b in zip(ours["per_class_table"], ref["per_class_table"]):
        assert a["gt"] == b["gt"] and (a["AP"] is None) == (b["AP"] is None)
        assert a["AP"] is None or a["AP"] == pytest.approx(b["AP"], abs=1e-15)
    assert ours["summary"].splitlines()[-12:] == ref["summary"].splitlines()[-12:]


def test_default_cocoeval_is_pycocotools():
    from metaanchor.engine.evaluate import cocoeval_backend, run_cocoeval

    assert cocoeval_backend() == "pycocotools"
    with pytest.raises(ValueError, match="choose one of pycocotools, faster-coco-eval"):
        cocoeval_backend("detectron2")
    gt, results = _hand_made_coco()
    ev, summary = run_cocoeval(gt, results)
    assert type(ev).__module__ == "pycocotools.cocoeval" and len(ev.stats) == 12
    assert summary.count("Average Precision") == 6 and summary.count("Average Recall") == 6


def test_cpu_bf16_runs_both_sides_under_bfloat16_only_where_the_cpu_has_it(monkeypatch, capsys):
    import metaanchor.engine.device as device_mod
    from metaanchor.cli.bench import bench_config
    from metaanchor.cli.main import build_parser
    from metaanchor.engine.bench.timing import autocast

    args = build_parser().parse_args(["bench", "--quick", "--device", "cpu", "--cpu-bf16"])
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    cfg = bench_config(args)
    assert cfg.use_amp
    with autocast(cfg.device, cfg.use_amp):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    code, out, err = cli(capsys, "bench", "--quick", "--device", "cpu", "--cpu-bf16")
    assert code == 2 and len(err) == 1 and "--cpu-bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX)" in err[0]
    assert not bench_config(build_parser().parse_args(["bench", "--quick", "--device", "cpu"])).use_amp


def test_training_step_runs_our_model_in_the_layout_training_uses():
    """The timed training step is ours as `metaanchor train` runs it by default: NCHW on a CPU."""
    from metaanchor.engine.bench.models import build_training_models
    from metaanchor.engine.device import trains_channels_last

    models = build_training_models("tiny", 3, 64, 16, "cpu")
    assert models["ours"]._channels_last is trains_channels_last(torch.device("cpu")) is False
    assert models["ours"].training and models["tv"].training
