"""Our RetinaNet detector vs torchvision's, side by side in one process (``metaanchor bench``).

Both models get the same backbone, input size, 9 anchors, class count, random weights, threads
and autocast (float16 on CUDA by default; bfloat16 on a CPU with ``--cpu-bf16``); they alternate
in every measurement (``timing.interleaved``), and each ratio is the median over rounds of
torchvision's time / ours, with its min..max. Measured: end-to-end inference images/s (pre- and
post-processing included) at each batch size, with the default score threshold and with every
candidate passing (``config.SETTINGS``), the share of our inference time spent in post-processing,
a training step (forward, loss, backward, SGD step) at each training batch size, and peak memory
of inference and of a training step.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import nn

from metaanchor.engine.bench import models as bench_models
from metaanchor.engine.bench.config import HEADLINE_SETTING, SETTINGS, BenchConfig
from metaanchor.engine.bench.timing import (
    amp_dtype,
    autocast,
    interleaved,
    matmul_flops,
    model_flops,
    peak_memory,
    ratio_stats,
    sync,
)
from metaanchor.modeling.postprocess import postprocess


def random_images(size: int, batch: int, device) -> list:
    """``batch`` random [3, size, size] images in [0, 1] on ``device`` (seeded by the batch size)."""
    g = torch.Generator().manual_seed(batch)
    return [torch.rand(3, size, size, generator=g).to(device) for _ in range(batch)]


def random_targets(size: int, num_classes: int, batch: int, device, boxes: int = 5) -> list[dict]:
    """Per image {"boxes": [boxes, 4] x1y1x2y2 px inside the image, "labels": [boxes]}, seeded."""
    g = torch.Generator().manual_seed(2)
    targets = []
    for _ in range(batch):
        xy = torch.rand(boxes, 2, generator=g) * size * 0.7
        wh = 16 + torch.rand(boxes, 2, generator=g) * size * 0.3
        targets.append({"boxes": torch.cat([xy, (xy + wh).clamp(max=size)], 1).to(device),
                        "labels": torch.randint(0, num_classes, (boxes,), generator=g).to(device)})
    return targets


def inference(model: nn.Module, images: list, amp: bool) -> Callable[[], object]:
    """One end-to-end eval forward of ``model`` on ``images`` ([3, H, W] in [0, 1])."""
    device = images[0].device

    def run():
        with torch.inference_mode(), autocast(device, amp):
            return model(images)
    return run


def postprocessing(model, images: list, amp: bool) -> Callable[[], object]:
    """Our post-processing (per-level top-k, threshold, decode, NMS) on the model's own head outputs for
    ``images``, as its eval forward runs it."""
    with torch.inference_mode(), autocast(images[0].device, amp):
        batch, _, sizes = model.batcher(images)
        features = model.backbone(batch)
        cls_logits, box_deltas = model.raw_outputs(features)  # [B, A, C], [B, A, 4]
        shapes = [tuple(f.shape[-2:]) for f in features]
        anchors = model.grid(shapes, batch.device)  # [A, 4]
    level_sizes = [h * w * k for (h, w), k in zip(shapes, model.anchors.num_anchors(len(shapes)))]

    def run():
        with torch.inference_mode(), autocast(images[0].device, amp):
            return postprocess(cls_logits, box_deltas, anchors, level_sizes, sizes, model.box_coder,
                               model.score_thresh, model.nms_thresh, model.topk_candidates, model.detections_per_img)
    return run


def postprocess_share(model, images: list, rounds: int, amp: bool) -> float:
    """Median over rounds of (post-processing time / end-to-end inference time), ours."""
    times = interleaved({"all": inference(model, images, amp), "post": postprocessing(model, images, amp)},
                        rounds, images[0].device, warmup=0)
    return statistics.median(p / a for p, a in zip(times["post"], times["all"]))


def train_step(model: nn.Module, images: list, targets: list[dict], amp: bool) -> Callable[[], None]:
    """One SGD step (forward + loss + backward + step), under autocast when ``amp`` (float16 with loss scaling)."""
    device = images[0].device
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and amp_dtype(device) == torch.float16)

    def run():
        with autocast(device, amp):
            losses = model(images, targets)
        opt.zero_grad(set_to_none=True)
        scaler.scale(sum(losses.values())).backward()
        scaler.step(opt)
        scaler.update()
    return run


def bench_inference(models: dict, cfg: BenchConfig, device, mm_rate: float, flops_per_image: float) -> dict:
    """{setting: {"b<batch>": row}}: images/s of each model, speed-up (median, min, max over rounds),
    post-processing share and FLOP efficiency (our nominal FLOP/s over the matmul rate)."""
    out = {}
    amp = cfg.use_amp
    for setting, thresh in SETTINGS.items():
        bench_models.set_score_thresh(models, thresh)
        rows = {}
        for batch in cfg.infer_batches:
            images = random_images(cfg.size, batch, device)
            names = ["tv", "ours"] + (["plain"] if batch in cfg.plain_batches else [])
            times = interleaved({n: inference(models[n], images, amp) for n in names}, cfg.rounds, device)
            row = {f"{n}_images_per_s": batch / statistics.median(times[n]) for n in names}
            s = ratio_stats(times)
            row |= {"speedup": s["median"], "speedup_min": s["min"], "speedup_max": s["max"]}
            if "plain" in times:
                row["speedup_unfused"] = ratio_stats(times, "plain")["median"]
            row["postprocess_share"] = postprocess_share(models["ours"], images, min(cfg.rounds, 3), amp)
            row["flop_efficiency"] = flops_per_image * row["ours_images_per_s"] / mm_rate
            rows[f"b{batch}"] = row
        out[setting] = rows
    return out


def bench_train(backbone: str, cfg: BenchConfig, device) -> dict:
    """{"b<batch>": row} per training batch: step seconds of each model (median), speed-up (median, min, max)
    and the peak memory of one step (bytes, and ours / torchvision)."""
    models = bench_models.build_training_models(backbone, cfg.num_classes, cfg.size, cfg.fpn_channels, device)
    out = {}
    for batch in cfg.train_batches:
        images = random_images(cfg.size, batch, device)
        targets = random_targets(cfg.size, cfg.num_classes, batch, device)
        fns = {name: train_step(m, images, targets, cfg.use_amp) for name, m in models.items()}
        times = interleaved(fns, cfg.rounds, device)
        s = ratio_stats(times)
        mem = {name: peak_memory(fn, device) for name, fn in fns.items()}
        out[f"b{batch}"] = {"tv_step_s": statistics.median(times["tv"]),
                            "ours_step_s": statistics.median(times["ours"]),
                            "speedup": s["median"], "speedup_min": s["min"], "speedup_max": s["max"],
                            "peak_mem_bytes": mem, "peak_mem_ratio": mem["ours"] / mem["tv"]}
    return out


def bench_metaanchor_costs(model, cfg: BenchConfig, device) -> dict:
    """Generating the weights of a new anchor set (first call vs cached) and the MetaAnchor head's time
    against a predefined-anchor head of the same size."""
    from metaanchor.families.retinanet.heads import PredefinedAnchorHead

    with torch.inference_mode():
        x = model.batcher(random_images(cfg.size, 1, device))[0]
        x = x.contiguous(memory_format=torch.channels_last) if bench_models.ours_channels_last(device) else x
        feats = model.backbone(x)
        model.set_anchors("5x5")
        sync(device)
        t0 = time.perf_counter()
        model.head.level_params(feats)
        sync(device)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.head.level_params(feats)
        sync(device)
        cached = time.perf_counter() - t0
        model.set_anchors("3x3")
    predefined = PredefinedAnchorHead(cfg.fpn_channels, cfg.num_classes, 9, 4).to(device).eval()
    if bench_models.ours_channels_last(device):
        predefined = predefined.to(memory_format=torch.channels_last)

    def head(h):
        def run():
            with torch.inference_mode():
                h(feats)
        return run
    times = interleaved({"predefined": head(predefined), "ours": head(model.head)}, max(2, cfg.rounds), device)
    return {"generate_new_anchor_set_first_s": first, "generate_cached_s": cached,
            "metaanchor_head_s": statistics.median(times["ours"]),
            "predefined_head_s": statistics.median(times["predefined"]),
            "head_time_ratio_metaanchor_over_predefined": 1 / ratio_stats(times, "ours", "predefined")["median"]}


def bench_backbone(backbone: str, cfg: BenchConfig, device, log=print) -> dict:
    """Every measurement for one backbone."""
    models = bench_models.build_inference_models(backbone, cfg.num_classes, cfg.size, cfg.fpn_channels, device)
    flops = model_flops(models["plain"], random_images(cfg.size, 1, device))
    mm_rate = matmul_flops(cfg.matmul_size, device, amp_dtype(device) if cfg.use_amp else torch.float32)
    log(f"[{backbone}] {flops / 1e9:.1f} GFLOP per image; matmul {mm_rate / 1e9:.1f} GFLOP/s")
    result = {"gflops_per_image": flops / 1e9, "matmul_gflops_per_s": mm_rate / 1e9}
    result["inference"] = bench_inference(models, cfg, device, mm_rate, flops)
    log(f"[{backbone}] inference done")
    bench_models.set_score_thresh(models, SETTINGS[HEADLINE_SETTING])
    images = random_images(cfg.size, cfg.mem_batch, device)
    mem = {n: peak_memory(inference(models[n], images, cfg.use_amp), device) for n in ("tv", "plain", "ours")}
    result["peak_mem_bytes"] = mem | {"batch": cfg.mem_batch}
    result["peak_mem_ratio"] = mem["ours"] / mem["tv"]
    result["peak_mem_ratio_unfused"] = mem["plain"] / mem["tv"]
    result["metaanchor"] = bench_metaanchor_costs(models["ours"], cfg, device)
    del models
    result["train"] = bench_train(backbone, cfg, device)
    log(f"[{backbone}] training step done")
    return result


def headline(result: dict, cfg: BenchConfig) -> dict:
    """The headline keys (BENCHMARKS.md) of one backbone's result: the many-candidates setting, the largest
    inference batch and the first training batch."""
    inf = result["inference"][HEADLINE_SETTING]
    big = f"b{max(cfg.infer_batches)}"
    train = result["train"][f"b{cfg.train_batches[0]}"]
    out = {f"inference_speedup_b{b}": inf[f"b{b}"]["speedup"] for b in cfg.infer_batches}
    out |= {"train_step_speedup": train["speedup"], "postprocess_share": inf[big]["postprocess_share"],
            "peak_mem_ratio": result["peak_mem_ratio"], "train_peak_mem_ratio": train["peak_mem_ratio"],
            "flop_efficiency": inf[big]["flop_efficiency"]}
    out.setdefault("inference_speedup_b1", inf[f"b{min(cfg.infer_batches)}"]["speedup"])
    out.setdefault("inference_speedup_b8", inf[big]["speedup"])  # the documented key, whatever the batches
    return out


def run_bench(cfg: BenchConfig, log=print) -> dict:
    """Run the comparison; returns the JSON-ready report (headline keys from the first backbone)."""
    cfg.check()
    device = torch.device(cfg.device)
    started = time.perf_counter()
    amp = str(amp_dtype(device)).removeprefix("torch.") if cfg.use_amp else None
    report = {"machine": machine_info(device), "config": asdict(cfg) | {"amp": cfg.use_amp, "amp_dtype": amp},
              "settings": {k: {"score_thresh": v} for k, v in SETTINGS.items()}, "backbones": {}}
    for backbone in cfg.backbones:
        report["backbones"][backbone] = bench_backbone(backbone, cfg, device, log)
    report.update(headline(report["backbones"][cfg.backbones[0]], cfg))
    report["headline_backbone"] = cfg.backbones[0]
    report["wall_s"] = time.perf_counter() - started
    report["machine"]["load_avg_1min_end"] = os.getloadavg()[0]
    return report


def machine_info(device) -> dict:
    """CPU model, threads, torch version, device (and GPU name), 1-minute load average at the start."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    device = torch.device(device)
    info = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(device),
            "load_avg_1min": os.getloadavg()[0]}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
