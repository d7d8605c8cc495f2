"""``metaanchor bench``: our RetinaNet vs torchvision's, side by side; or ``--checkpoint``: one model in each
export format (file size, images/s, AP)."""

from __future__ import annotations

import sys
from pathlib import Path

from metaanchor.cli.common import DEVICE_HELP
from metaanchor.errors import UserError

# what --help shows, without importing torch (engine.bench.config holds the same numbers)
DEFAULT_BACKBONES, QUICK_BACKBONES = ("resnet50", "resnet18"), ("resnet18",)
DEFAULT_ROUNDS, QUICK_ROUNDS = 5, 2
DEFAULT_TRAIN_BATCHES, QUICK_TRAIN_BATCHES = (4,), (2,)
CHECKPOINT_FORMATS = "pytorch,onnx,pt2,torchscript"
SUFFIX = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt", "torchvision": ".pth"}
TIMED_IMAGES = 8  # --data: images timed (the first of the split); AP uses all of them
OPTION_OF = {"infer_batches": "--batches", "train_batches": "--train-batches", "size": "--size",
             "rounds": "--rounds", "backbones": "--backbone"}  # BenchConfig field -> the option setting it


def add(sub):
    p = sub.add_parser("bench", help="speed and memory vs torchvision's RetinaNet; --checkpoint: your model in each "
                                     "export format",
                       description="Without --checkpoint: time our RetinaNet detector and torchvision's RetinaNet "
                                   "(same ResNet-FPN backbone, input size, 9 anchors, 80 classes, random weights; "
                                   "nothing downloaded) interleaved in one process: inference images/s at each batch "
                                   "size with the default score threshold and with every candidate passing, the "
                                   "share of post-processing, a training step, peak memory; ratios are the median "
                                   "over rounds with min..max (BENCHMARKS.md). On CUDA both run under float16 "
                                   "autocast. With --checkpoint: export the model to each format in a temporary "
                                   "folder and time each on the images (and, with --data, compute AP and AP50).")
    p.add_argument("--quick", action="store_true",
                   help=f"fewer measurements: backbone {' '.join(QUICK_BACKBONES)}, {QUICK_ROUNDS} rounds, training "
                        f"batch {' '.join(map(str, QUICK_TRAIN_BATCHES))} (minutes on 2 CPU cores); --checkpoint: "
                        f"{QUICK_ROUNDS} rounds")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json-out", metavar="FILE", help="also write the report as JSON")
    p.add_argument("--rounds", type=int,
                   help=f"interleaved timed rounds per measurement (default {DEFAULT_ROUNDS}; --quick {QUICK_ROUNDS})")
    g = p.add_argument_group("comparison with torchvision")
    g.add_argument("--backbone", nargs="+", metavar="NAME",
                   help=f"backbones, the first one gives the headline (default {' '.join(DEFAULT_BACKBONES)}; "
                        f"--quick {' '.join(QUICK_BACKBONES)})")
    g.add_argument("--size", type=int, default=512, help="input side in px, both models (min_size = max_size)")
    g.add_argument("--batches", nargs="+", type=int, default=[1, 8], metavar="B", help="inference batch sizes")
    g.add_argument("--train-batches", nargs="+", type=int, metavar="B",
                   help=f"training-step batch sizes (default {' '.join(map(str, DEFAULT_TRAIN_BATCHES))}; --quick "
                        f"{' '.join(map(str, QUICK_TRAIN_BATCHES))})")
    g.add_argument("--no-amp", action="store_true", help="CUDA: float32 on both sides instead of float16 autocast")
    g.add_argument("--cpu-bf16", action="store_true",
                   help="CPU: both sides under bfloat16 autocast (a CPU with native bf16: AVX512-BF16 or AMX)")
    c = p.add_argument_group("your model in each export format (--checkpoint)")
    c.add_argument("--checkpoint", help="checkpoint to export and time (last.pt / best.pt)")
    c.add_argument("--images", nargs="+", metavar="IMAGE", help="images to time on")
    c.add_argument("--data", help="dataset to time on (its first images) and compute AP on (any layout "
                                  "metaanchor eval reads)")
    c.add_argument("--split", metavar="NAME", help="--data's VOC split or data.yaml entry (default: val)")
    c.add_argument("--formats", default=CHECKPOINT_FORMATS,
                   help="comma-separated: pytorch and export formats (onnx, pt2, torchscript, ...); a format this "
                        "installation cannot write or run is skipped with a note")
    c.add_argument("--anchors", help="anchor SPEC to bake into the exports (default: the checkpoint's)")
    c.add_argument("--batch-size", type=int, default=1, help="images per call when timing")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    _check_common(args)
    if args.checkpoint:
        return _bench_checkpoint(args)
    for option in ("images", "data", "split", "anchors"):
        if getattr(args, option) is not None:
            raise UserError(f"--{option} goes with --checkpoint (the comparison with torchvision uses random images)")
    return _bench_torchvision(args)


def _check_common(args) -> None:
    if args.rounds is not None and args.rounds < 1:
        raise UserError(f"--rounds {args.rounds}: must be at least 1")
    if args.json_out:
        from metaanchor.files import check_outputs

        check_outputs({"--json-out": args.json_out}, {"--checkpoint": args.checkpoint, "--images": args.images,
                                                      "--data": args.data})


def bench_config(args):
    """The ``BenchConfig`` of the command line: ``--quick``'s or the full one, with the options given."""
    from metaanchor.engine.bench.config import BenchConfig
    from metaanchor.engine.device import resolve_device

    device = str(resolve_device(args.device))
    cfg = BenchConfig.quick(device) if args.quick else BenchConfig(device=device)
    cfg.size, cfg.infer_batches = args.size, tuple(args.batches)
    if args.backbone:
        cfg.backbones = tuple(args.backbone)
    if args.train_batches:
        cfg.train_batches = tuple(args.train_batches)
    if args.rounds:
        cfg.rounds = args.rounds
    if args.no_amp:
        cfg.amp = False
    if args.cpu_bf16:
        from metaanchor.engine.device import cpu_has_native_bf16

        if not device.startswith("cpu"):
            raise UserError(f"--cpu-bf16 times the CPU; this run is on {device} (add --device cpu)")
        if not cpu_has_native_bf16():
            raise UserError("--cpu-bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); its bf16 "
                            "convolutions are emulated, far slower than float32, so there is nothing to measure")
        cfg.amp = True
    try:
        cfg.check()
    except ValueError as e:  # its message starts with the field's name: say the option instead
        field, _, rest = str(e).partition("=") if "=" in str(e).split(":")[0] else str(e).partition(":")
        raise UserError(f"{OPTION_OF[field]} {rest.lstrip()}" if field in OPTION_OF else str(e)) from None
    return cfg


def _bench_torchvision(args) -> int:
    from metaanchor.engine.bench.compare import run_bench
    from metaanchor.engine.bench.report import format_table, write_json

    report = run_bench(bench_config(args), log=lambda s: print(s, file=sys.stderr))
    print(format_table(report))
    if args.json_out:
        print(f"wrote {write_json(args.json_out, report)}")
    return 0


# ------------------------------------------------------------------ --checkpoint
def _formats(text: str) -> list[str]:
    names = [f.strip() for f in text.split(",") if f.strip()]
    if not names:
        raise UserError(f"--formats {text!r}: name at least one format")
    return list(dict.fromkeys(names))


def _bench_checkpoint(args) -> int:
    import json
    import tempfile

    from metaanchor.cli.common import check_anchors_and_batch, load_model
    from metaanchor.engine.bench.formats import bench_formats, format_formats, rows_json

    if (args.images is None) == (args.data is None):
        raise UserError("--checkpoint: give the images to time on, either --images IMAGE... or --data DATASET")
    formats = _formats(args.formats)
    check_anchors_and_batch(args)
    model = load_model(args.checkpoint, args.device)
    dataset, images = _inputs(args, model)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    with tempfile.TemporaryDirectory(prefix="metaanchor-bench-") as folder:
        candidates, skipped = _candidates(model, args, formats, Path(folder), images[:1])
        rows = bench_formats(candidates, images, rounds, args.batch_size, dataset, skipped,
                             log=lambda s: print(s, file=sys.stderr))
    print(f"{args.checkpoint}: {len(images)} images timed, {rounds} rounds, batch {args.batch_size}"
          + (f"; AP on {len(dataset)} images of {args.data}" if dataset is not None else ""))
    print(format_formats(rows))
    if args.json_out:
        from metaanchor.files import write_atomic

        out = {"checkpoint": str(args.checkpoint), "rounds": rounds, "images": len(images), "rows": rows_json(rows)}
        write_atomic(args.json_out, lambda f: f.write(json.dumps(out, indent=2).encode()))
        print(f"wrote {args.json_out}")
    return 0


def _inputs(args, model):
    """(dataset or None, the images to time: list of [3, H, W] in [0, 1])."""
    if args.images:
        from metaanchor.data.inputs import to_image_tensor

        return None, [to_image_tensor(p) for p in args.images]
    from metaanchor.data.sources import open_dataset

    dataset = open_dataset(args.data, None, args.split, default_split="val")
    if len(dataset.cat_ids) != model.num_classes:
        raise UserError(f"{args.data}: has {len(dataset.cat_ids)} categories but checkpoint {args.checkpoint} was "
                        f"trained for {model.num_classes}")
    if not len(dataset):
        raise UserError(f"{args.data}: no images")
    return dataset, [dataset[i][0] for i in range(min(TIMED_IMAGES, len(dataset)))]


def _candidates(model, args, formats: list[str], folder: Path, probe: list):
    """(candidates to time, rows of the formats skipped with their note). Each export is run once on
    ``probe`` (one image), so that a format that cannot run these inputs is a note, not a failure."""
    from metaanchor.deploy.export import FORMATS
    from metaanchor.engine.bench.formats import FormatRow

    candidates, skipped = [], []
    baked = None
    for fmt in formats:
        if fmt == "pytorch":
            candidates.append(_pytorch(model, args))
            continue
        if fmt not in FORMATS:
            raise UserError(f"--formats: unknown format {fmt!r}; choose from pytorch, {', '.join(FORMATS)}")
        runner = _runner(fmt)
        if runner is None:
            skipped.append(FormatRow(fmt, note="skipped: no runner for this format in metaanchor.deploy"))
            continue
        if baked is None:
            baked = model.bake(args.anchors or model.anchors, score_thresh=model.score_thresh).cpu().eval()
        try:
            candidate = _exported(baked, fmt, runner, folder)
            candidate.predict(probe)
            candidates.append(candidate)
        except Exception as e:  # an optional dependency missing, an exporter failing: the other formats still run
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            skipped.append(FormatRow(fmt, note=f"skipped: {type(e).__name__}: {reason}"))
        print(f"{fmt}: {'exported' if candidates and candidates[-1].name == fmt else skipped[-1].note}",
              file=sys.stderr)
    return candidates, skipped


def _runner(fmt: str):
    """``metaanchor.deploy.<fmt>_export.<fmt>_runner`` (path -> (run, meta)), or None where there is none."""
    import importlib

    try:
        module = importlib.import_module(f"metaanchor.deploy.{fmt}_export")
    except ImportError:
        return None
    return getattr(module, f"{fmt}_runner", None)


def _pytorch(model, args):
    """The checkpoint's model as loaded (eval mode, the checkpoint's anchors or --anchors) on --device."""
    import torch

    from metaanchor.engine.bench.formats import Candidate
    from metaanchor.engine.evaluate import evaluate

    device = next(model.parameters()).device
    anchors = args.anchors

    def predict(images):
        with model.evaluating(anchors), torch.inference_mode():
            return [{k: v.cpu() for k, v in d.items()} for d in model([im.to(device) for im in images])]
    return Candidate("pytorch", Path(args.checkpoint), device.type, predict,
                     lambda dataset: evaluate(model, dataset, anchors, progress=False))


def _exported(baked, fmt: str, runner, folder: Path):
    """Export ``baked`` as ``fmt`` into ``folder`` and wrap its runner with the numpy pre/post-processing."""
    from metaanchor.deploy.export import export
    from metaanchor.deploy.numpy_postprocess import detect
    from metaanchor.engine.bench.formats import Candidate

    path = export(baked, fmt, folder / f"model{SUFFIX.get(fmt, '.' + fmt)}")
    run, meta = runner(path)

    def predict(images):
        return detect(run, [im.permute(1, 2, 0).numpy() for im in images], meta)
    return Candidate(fmt, path, "cpu", predict)
