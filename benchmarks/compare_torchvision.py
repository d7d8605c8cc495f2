"""Side-by-side benchmark: our Detector vs torchvision's RetinaNet (SPEC section 6), on the public API.

Both models get the same backbone (ResNet-FPN, P3..P7, plain BatchNorm2d, all
layers trainable), input size, 9 anchors, 80 classes, random weights, threads,
eval mode and ``torch.inference_mode``. Everything runs in ONE process and the
models alternate (A B A B ...) after a warm-up, so machine load hits both alike;
a ratio is the median over rounds of (torchvision time / our time).

Two score-threshold settings:
    default: score_thresh=0.05. Random heads score ~0.01, so no candidate passes
        and post-processing is nearly free for both.
    many: score_thresh=0.0 on both models, emulating a trained model with many
        confident boxes: all top-1000-per-level candidates (5000 per image) go
        through decode and NMS. The headline JSON keys come from this setting.

    python benchmarks/compare_torchvision.py --quick --json-out bench.json
    python benchmarks/compare_torchvision.py --train-data DIR      # real-data training (compare_torchvision_train)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from metaanchor.errors import UserError
from metaanchor.families.retinanet import RetinaNetDetector as Detector
from metaanchor.modeling.postprocess import postprocess

SETTINGS = {"default": 0.05, "many": 0.0}
HEADLINE_SETTING = "many"


@dataclass
class BenchConfig:
    """What to measure. ``quick()`` / ``tiny()`` give the CLI's --quick and the test's configuration."""

    backbones: tuple[str, ...] = ("resnet50", "resnet18")
    size: int = 512
    num_classes: int = 80
    fpn_channels: int = 256
    infer_batches: tuple[int, ...] = (1, 8)
    repeats: dict[int, int] = field(default_factory=lambda: {1: 5, 8: 3})  # timed rounds per batch size
    plain_batches: tuple[int, ...] = (1, 8)  # batch sizes where the un-optimised model is timed too
    train_batch: int = 4
    train_repeats: int = 3
    mem_batch: int = 1
    matmul_size: int = 2048
    device: str = "cpu"

    @classmethod
    def quick(cls, device: str = "cpu") -> BenchConfig:
        return cls(backbones=("resnet18",), repeats={1: 2, 8: 1}, plain_batches=(1,), train_batch=2,
                   train_repeats=1, device=device)

    @classmethod
    def tiny(cls, device: str = "cpu") -> BenchConfig:
        return cls(backbones=("tiny",), size=96, num_classes=3, fpn_channels=32, infer_batches=(1, 2),
                   repeats={1: 1, 2: 1}, plain_batches=(1,), train_batch=2, train_repeats=1, matmul_size=1024,
                   device=device)


# ------------------------------------------------------------------ models
def torchvision_retinanet(backbone: str, num_classes: int, size: int, fpn_channels: int = 256) -> nn.Module:
    """torchvision RetinaNet with our backbone settings (ResNet-FPN P3..P7, 3x3 anchors, BN2d)."""
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    if backbone == "tiny":  # tests only: our tiny pyramid is a drop-in body
        from metaanchor.modeling.backbones import TinyFPNBackbone
        body = TinyFPNBackbone(fpn_channels)
    else:
        body = resnet_fpn_backbone(backbone_name=backbone, weights=None, norm_layer=nn.BatchNorm2d,
                                   trainable_layers=5, returned_layers=[2, 3, 4],
                                   extra_blocks=LastLevelP6P7(256, 256))
    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    return RetinaNet(body, num_classes, min_size=size, max_size=size, anchor_generator=anchors)


def ours_channels_last(device) -> bool:
    """Whether the optimised model runs NHWC: on the CPU, where it measured faster."""
    return torch.device(device).type == "cpu"


def build_models(backbone: str, cfg: BenchConfig, device) -> dict[str, nn.Module]:
    """{"tv": torchvision, "plain": our Detector, "ours": our Detector after optimize_for_inference()}."""
    torch.manual_seed(0)
    plain = Detector(cfg.num_classes, backbone=backbone, fpn_channels=cfg.fpn_channels, head_convs=4,
                     min_size=cfg.size, max_size=cfg.size).to(device)
    tv = torchvision_retinanet(backbone, cfg.num_classes, cfg.size, cfg.fpn_channels).to(device)
    ours = copy.deepcopy(plain).optimize_for_inference(channels_last=ours_channels_last(device))
    return {"tv": tv.eval(), "plain": plain.eval(), "ours": ours}


def set_score_thresh(models: dict[str, nn.Module], thresh: float) -> None:
    for m in models.values():  # both torchvision's RetinaNet and our Detector read .score_thresh
        m.score_thresh = thresh


# ------------------------------------------------------------------ timing
def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, device, warmup: int = 1) -> dict[str, list]:
    """Run each fn ``warmup`` times, then ``repeats`` rounds A B C A B C ...; seconds per call."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            _sync(device)
    times: dict[str, list] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def speedup(times: dict[str, list], ours: str = "ours", ref: str = "tv") -> float:
    """Median over rounds of ref time / our time (same round = same machine load)."""
    return statistics.median(r / o for r, o in zip(times[ref], times[ours]))


def matmul_flops(n: int, device, repeats: int = 3) -> float:
    """Dense float32 matmul FLOP/s of this process (best of ``repeats``)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def model_flops(model: nn.Module, images) -> float:
    """2 x MACs of convs and linears for one forward (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(images)
    return float(counter.get_total_flops())


def peak_memory(fn: Callable[[], object], device) -> float:
    """Peak bytes allocated by tensors during fn() above what was live before.

    CUDA: torch.cuda.max_memory_allocated. CPU: the allocation/free events of
    torch.profiler(profile_memory=True), replayed in time order. oneDNN scratch
    buffers are not tensors and are not seen on CPU.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return float(peak)


# ------------------------------------------------------------------ measurements
def _images(cfg: BenchConfig, batch: int, device) -> list:
    g = torch.Generator().manual_seed(batch)
    return [torch.rand(3, cfg.size, cfg.size, generator=g).to(device) for _ in range(batch)]


def _infer(model: nn.Module, images) -> Callable[[], object]:
    def run():
        with torch.inference_mode():
            return model(images)
    return run


def _postprocess(model: Detector, images) -> Callable[[], object]:
    """The model's post-processing (per-level top-k, threshold, decode, NMS) on its own head outputs for
    ``images``, as its eval forward runs it."""
    with torch.inference_mode():
        batch, _, sizes = model.batcher(images)
        features = model.backbone(batch)
        cls_logits, box_deltas = model.raw_outputs(features)  # [B, A, C], [B, A, 4]
        shapes = [tuple(f.shape[-2:]) for f in features]
        anchors = model.grid(shapes, batch.device)  # [A, 4]
    level_sizes = [h * w * k for (h, w), k in zip(shapes, model.anchors.num_anchors(len(shapes)))]

    def run():
        with torch.inference_mode():
            return postprocess(cls_logits, box_deltas, anchors, level_sizes, sizes, model.box_coder,
                               model.score_thresh, model.nms_thresh, model.topk_candidates, model.detections_per_img)
    return run


def postprocess_share(model: Detector, images, repeats: int = 2) -> float:
    """Fraction of our end-to-end inference time spent in post-processing (``_postprocess``), each round timing
    the whole forward and then the post-processing alone."""
    times = interleaved({"all": _infer(model, images), "post": _postprocess(model, images)}, repeats,
                        next(model.parameters()).device, warmup=0)
    return statistics.median(p / a for p, a in zip(times["post"], times["all"]))


def bench_inference(models, cfg: BenchConfig, device, mm_rate: float, flops_per_image: float) -> dict:
    """Per setting and batch size: images/s of each model, speedups, post-processing share."""
    out = {}
    for setting, thresh in SETTINGS.items():
        set_score_thresh(models, thresh)
        res = {}
        for batch in cfg.infer_batches:
            images = _images(cfg, batch, device)
            names = ["tv", "ours"] + (["plain"] if batch in cfg.plain_batches else [])
            times = interleaved({n: _infer(models[n], images) for n in names}, cfg.repeats[batch], device)
            row = {f"{n}_images_per_s": batch / statistics.median(times[n]) for n in names}
            row["speedup"] = speedup(times)
            if "plain" in times:
                row["speedup_unfused"] = speedup(times, "plain")
            row["postprocess_share"] = postprocess_share(models["ours"], images, max(1, min(2, cfg.repeats[batch])))
            row["flop_efficiency"] = flops_per_image * row["ours_images_per_s"] / mm_rate
            res[f"b{batch}"] = row
        out[setting] = res
    return out


def _train_step(model: nn.Module, opt, images, targets) -> Callable[[], None]:
    def run():
        losses = model(images, targets)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()
    return run


def bench_train(backbone: str, cfg: BenchConfig, device) -> dict:
    """One SGD step (forward + loss + backward + step) at ``train_batch``, both in train mode; ours channels_last."""
    torch.manual_seed(1)
    models = {"ours": Detector(cfg.num_classes, backbone=backbone, fpn_channels=cfg.fpn_channels, head_convs=4,
                               min_size=cfg.size, max_size=cfg.size).to(device).set_channels_last(),
              "tv": torchvision_retinanet(backbone, cfg.num_classes, cfg.size, cfg.fpn_channels).to(device)}
    images = _images(cfg, cfg.train_batch, device)
    g = torch.Generator().manual_seed(2)
    targets = []
    for _ in images:
        xy = torch.rand(5, 2, generator=g) * cfg.size * 0.7
        wh = 16 + torch.rand(5, 2, generator=g) * cfg.size * 0.3
        targets.append({"boxes": torch.cat([xy, xy + wh], 1).to(device),
                        "labels": torch.randint(0, cfg.num_classes, (5,), generator=g).to(device)})
    fns = {}
    for name, m in models.items():
        m.train()
        fns[name] = _train_step(m, torch.optim.SGD(m.parameters(), lr=1e-6, momentum=0.9), images, targets)
    times = interleaved(fns, cfg.train_repeats, device)
    return {"tv_step_s": statistics.median(times["tv"]), "ours_step_s": statistics.median(times["ours"]),
            "speedup": speedup(times)}


def bench_metaanchor_costs(models, cfg: BenchConfig, device) -> dict:
    """Generating weights for a new anchor set (first call vs cached) and MetaAnchor vs predefined head."""
    from metaanchor.families.retinanet.heads import PredefinedAnchorHead

    ours = models["ours"]
    with torch.inference_mode():
        x = ours.batcher(_images(cfg, 1, device))[0]
        x = x.contiguous(memory_format=torch.channels_last) if ours_channels_last(device) else x
        feats = ours.backbone(x)
        ours.set_anchors("5x5")
        t0 = time.perf_counter()
        ours.head.level_params(feats)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours.head.level_params(feats)
        cached = time.perf_counter() - t0
        ours.set_anchors("3x3")
    predefined = PredefinedAnchorHead(cfg.fpn_channels, cfg.num_classes, 9, 4).to(device).eval()
    if ours_channels_last(device):
        predefined = predefined.to(memory_format=torch.channels_last)

    def head_fn(head):
        def run():
            with torch.inference_mode():
                head(feats)
        return run
    times = interleaved({"predefined": head_fn(predefined), "ours": head_fn(ours.head)}, max(2, cfg.repeats[1]),
                        device)
    return {"generate_new_anchor_set_first_s": first, "generate_cached_s": cached,
            "metaanchor_head_s": statistics.median(times["ours"]),
            "predefined_head_s": statistics.median(times["predefined"]),
            "head_time_ratio_metaanchor_over_predefined": 1 / speedup(times, "ours", "predefined")}


def bench_backbone(backbone: str, cfg: BenchConfig, device, log=print) -> dict:
    """Everything for one backbone."""
    models = build_models(backbone, cfg, device)
    one = _images(cfg, 1, device)
    flops = model_flops(models["plain"], one)
    mm_rate = matmul_flops(cfg.matmul_size, device)
    log(f"[{backbone}] {flops / 1e9:.1f} GFLOP per image; matmul {mm_rate / 1e9:.1f} GFLOP/s")
    result = {"gflops_per_image": flops / 1e9, "matmul_gflops_per_s": mm_rate / 1e9}
    result["inference"] = bench_inference(models, cfg, device, mm_rate, flops)
    log(f"[{backbone}] inference done")
    set_score_thresh(models, SETTINGS[HEADLINE_SETTING])
    mem_images = _images(cfg, cfg.mem_batch, device)
    mem = {n: peak_memory(_infer(models[n], mem_images), device) for n in ("tv", "plain", "ours")}
    result["peak_mem_bytes"] = mem | {"batch": cfg.mem_batch}
    result["peak_mem_ratio"] = mem["ours"] / mem["tv"]
    result["peak_mem_ratio_unfused"] = mem["plain"] / mem["tv"]
    result["metaanchor"] = bench_metaanchor_costs(models, cfg, device)
    del models
    result["train"] = bench_train(backbone, cfg, device)
    log(f"[{backbone}] training step done")
    return result


def headline(result: dict, cfg: BenchConfig) -> dict:
    """The headline keys (BENCHMARKS.md) from one backbone's result (many-candidates setting)."""
    inf = result["inference"]
    big = f"b{max(cfg.infer_batches)}"
    out = {"inference_speedup_b1": inf[HEADLINE_SETTING]["b1"]["speedup"],
           f"inference_speedup_{big}": inf[HEADLINE_SETTING][big]["speedup"],
           "train_step_speedup": result["train"]["speedup"],
           "postprocess_share": inf[HEADLINE_SETTING][big]["postprocess_share"],
           "peak_mem_ratio": result["peak_mem_ratio"],
           "flop_efficiency": inf[HEADLINE_SETTING][big]["flop_efficiency"]}
    if big != "b8":  # tiny configurations: keep the documented key present
        out["inference_speedup_b8"] = out[f"inference_speedup_{big}"]
    return out


def run_bench(cfg: BenchConfig, log=print) -> dict:
    """Run the benchmark; returns the JSON-ready report (headline keys from the first backbone)."""
    device = torch.device(cfg.device)
    started = time.perf_counter()
    report = {"machine": machine_info(device), "config": asdict(cfg) | {"repeats": {str(k): v for k, v in
                                                                                      cfg.repeats.items()}},
              "settings": {k: {"score_thresh": v} for k, v in SETTINGS.items()},
              "backbones": {}}
    for backbone in cfg.backbones:
        report["backbones"][backbone] = bench_backbone(backbone, cfg, device, log)
    first = report["backbones"][cfg.backbones[0]]
    report.update(headline(first, cfg))
    report["headline_backbone"] = cfg.backbones[0]
    report["wall_s"] = time.perf_counter() - started
    return report


def machine_info(device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_table(report: dict) -> str:
    """Human-readable summary: one block per backbone, ratios ours / torchvision."""
    lines = [f"machine: {report['machine']['cpu']}, {report['machine']['threads']} threads, "
             f"device {report['machine']['device']}; speedup = torchvision time / our time (ours: BN folded"
             f"{' + channels_last' if report['machine']['device'] == 'cpu' else ''}; 'unfused': plain model)"]
    for backbone, r in report["backbones"].items():
        lines.append(f"\n{backbone}-FPN, {r['gflops_per_image']:.1f} GFLOP/image, "
                     f"matmul {r['matmul_gflops_per_s']:.0f} GFLOP/s")
        lines.append(f"{'setting':<9}{'batch':>6}{'tv img/s':>10}{'ours img/s':>11}{'speedup':>9}"
                     f"{'unfused':>9}{'post%':>7}{'flop eff':>9}")
        for setting, rows in r["inference"].items():
            for b, row in rows.items():
                unf = f"{row['speedup_unfused']:.2f}" if "speedup_unfused" in row else "-"
                lines.append(f"{setting:<9}{b[1:]:>6}{row['tv_images_per_s']:>10.3f}{row['ours_images_per_s']:>11.3f}"
                             f"{row['speedup']:>9.2f}{unf:>9}{100 * row['postprocess_share']:>7.1f}"
                             f"{row['flop_efficiency']:>9.2f}")
        t, m = r["train"], r["metaanchor"]
        lines.append(f"train step: tv {t['tv_step_s']:.2f} s, ours {t['ours_step_s']:.2f} s, "
                     f"speedup {t['speedup']:.2f}")
        lines.append(f"peak memory (batch {r['peak_mem_bytes']['batch']}): ratio {r['peak_mem_ratio']:.2f} "
                     f"(unfused {r['peak_mem_ratio_unfused']:.2f}); tv {r['peak_mem_bytes']['tv'] / 2**20:.0f} MiB")
        lines.append(f"MetaAnchor: new anchor set weights {1e3 * m['generate_new_anchor_set_first_s']:.2f} ms, "
                     f"cached {1e3 * m['generate_cached_s']:.3f} ms; head time MetaAnchor / predefined "
                     f"{m['head_time_ratio_metaanchor_over_predefined']:.2f}")
    keys = ("inference_speedup_b1", "inference_speedup_b8", "train_step_speedup", "postprocess_share",
            "peak_mem_ratio", "flop_efficiency")
    lines.append(f"\nheadline ({report['headline_backbone']}, many-candidates): "
                 + ", ".join(f"{k}={report[k]:.3f}" for k in keys))
    lines.append(f"wall time {report['wall_s']:.0f} s")
    return "\n".join(lines)


def bench(quick: bool = False, json_out: str | None = None, device: str = "auto", tiny: bool = False) -> dict:
    """Run the comparison, print its table and write ``json_out``; returns the report."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = BenchConfig.tiny(device) if tiny else BenchConfig.quick(device) if quick else BenchConfig(device=device)
    report = run_bench(cfg)
    print(format_table(report))
    if json_out:
        _write_json(json_out, report)
    return report


def _write_json(path: str, report: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2))


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    p = Parser(prog="python benchmarks/compare_torchvision.py",
               description="Time our Detector and torchvision's RetinaNet (same ResNet-FPN backbone, 512 px, 9 "
                           "anchors, 80 classes, random weights) interleaved in one process: inference images/s "
                           "at batch 1 and 8, a training step, peak memory, post-processing share and FLOP "
                           "efficiency. See BENCHMARKS.md.")
    p.add_argument("--quick", action="store_true", help="ResNet-18 only, fewer repeats (under 3 min on 2 cores)")
    p.add_argument("--json-out", help="write the report as JSON")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--train-data", metavar="DIR",
                   help="instead: training images/s with data loading on a dataset folder (DIR/annotations.json + "
                        "DIR/images), our Trainer vs torchvision's RetinaNet fed by a references-style loader (CPU)")
    p.add_argument("--size", type=int, default=512, help="--train-data: input short side (long side capped too)")
    p.add_argument("--batch", type=int, default=2, help="--train-data: batch size")
    p.add_argument("--rounds", type=int, default=3, help="--train-data: interleaved rounds (median and spread)")
    p.add_argument("--steps", type=int, default=2, help="--train-data: training steps per measurement")
    p.add_argument("--backbone", default="resnet18", help="--train-data: resnet18, resnet50, ...")
    return p


def run(args) -> int:
    """The command: checks its arguments (``UserError``), then runs one of the two comparisons."""
    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise UserError(f"--device {args.device}: choose auto, cpu or cuda")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available on this machine")
    if not args.train_data:
        bench(quick=args.quick, json_out=args.json_out, device=args.device)
        return 0
    from compare_torchvision_train import bench_train_real, format_report

    if not (Path(args.train_data) / "annotations.json").is_file():
        raise UserError(f"--train-data {args.train_data}: not a dataset folder (no annotations.json; convert one "
                        "with metaanchor data convert)")
    for name in ("size", "batch", "rounds", "steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} {getattr(args, name)}: must be at least 1")
    report = bench_train_real(args.train_data, args.size, args.batch, args.backbone, args.rounds, args.steps)
    print(format_report(report))
    if args.json_out:
        _write_json(args.json_out, report)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
