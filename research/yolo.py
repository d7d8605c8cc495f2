"""yolo: YOLOv2 vs YOLOv2 + MetaAnchor, both with k-means anchors; MetaAnchor also evaluated with other sets."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from metaanchor.data.box_shapes import box_shapes, input_scale
from metaanchor.engine.anchor_search import spec_of
from metaanchor.families.yolov2 import fit_yolo_anchors
from metaanchor.geometry.anchor_fit import write_anchor_file
from metaanchor.geometry.anchors import ANCHOR_BASE, AnchorSet
from research import report
from research.context import (
    Context,
    Planned,
    curves_section,
    metrics,
    row,
    scale_section,
    verdict_section,
)
from research.runner import anchor_key
from research.verdicts import better

YOLO_KS = (3, 9)  # k of the other k-means sets MetaAnchor is evaluated with (trained with k=5)
YOLO_K = 5


def yolo_overrides(scale) -> tuple[str, ...]:
    """Config overrides that turn a runner's RetinaNet config into a YOLOv2 one at ``scale``.

    quick: ``configs/yolo_demo.yaml`` (tiny backbone, neck 128 ch, 2 head convs, generator width 16,
    images upsampled x2, lr 0.02, 720 iterations: validation AP50 flat at ~0.83 over the last 120); other
    scales: the scale's own backbone, widths and schedule, input at least 256 px (``yolo_scale``).
    """
    s = yolo_scale(scale)
    return ("model.arch=yolov2", f"model.fpn_channels={s.fpn_channels}",
            f"model.head_convs={s.head_convs}", f"model.hidden_dim={s.hidden_dim}",
            f"input.size={s.input_size or s.image_size}", f"solver.max_iter={s.max_iter}", f"solver.lr={s.lr}",
            f"solver.warmup_iters={s.warmup_iters}", f"checkpoint.period={s.max_iter}")


# Smallest network input: YOLOv2 predicts on one stride-32 grid, and 128 px images give a 4 x 4 grid that cannot
# separate the synthetic objects; upsampled x2 they give an 8 x 8 grid.
YOLO_MIN_INPUT = 256


def yolo_scale(scale):
    """The runner's scale as YOLOv2 trains it (quick: ``configs/yolo_demo.yaml``'s widths and schedule; others:
    2 head convs and an input of at least ``YOLO_MIN_INPUT`` px)."""
    if scale.name == "quick":
        return replace(scale, max_iter=720, input_size=2 * scale.image_size, fpn_channels=128, head_convs=2,
                       hidden_dim=16, lr=0.02, warmup_iters=50)
    return replace(scale, head_convs=2, input_size=max(scale.input_size or scale.image_size, YOLO_MIN_INPUT))


def _sets(ctx: Context, report_files: bool = True) -> tuple[dict[str, str], str, float, int]:
    """The anchor sets (label -> SPEC or anchor file; the training set first), the training file, the box
    scale of the k-means fit and the input size. ``report_files``: also write ``reports/yolo/kmeans*.yaml``
    (False when only planning: the training file in the cache is all a plan needs)."""
    r = ctx.runner
    size = yolo_scale(r.scale).input_size  # set by yolo_scale for every scale, as yolo_overrides passes it on
    train_dir = r.dataset(r.main, "train")
    k_scale = input_scale(train_dir, None, size)  # boxes resized like the images
    sets: dict[str, str] = {}
    for k in (YOLO_K, *YOLO_KS) if report_files else (YOLO_K,):
        fitted = fit_yolo_anchors(train_dir, k=k, scale=k_scale)
        info = dict(source=f"{train_dir.name} (training split), k-means 1 - IoU, k={k}, boxes x{k_scale:.3g}",
                    method="metaanchor.families.yolov2.fit_yolo_anchors")
        if report_files:
            path = write_anchor_file(fitted, ctx.dir("yolo") / f"kmeans{k}.yaml", **info)
        if k == YOLO_K:  # the training file lives in the cache, named by its shapes (its path is hashed)
            path = write_anchor_file(fitted, r.root / "anchors" / f"yolo-kmeans{k}-{anchor_key(fitted)}.yaml", **info)
            train_file = path
        sets[f"k-means k={k}" + (" (training)" if k == YOLO_K else "")] = str(path)
    rel = np.sqrt(np.prod(box_shapes(train_dir), 1)) * k_scale / (ANCHOR_BASE * 32)
    sr = spec_of(np.round(np.percentile(rel, [25, 75]), 3), (0.5, 1, 2))
    sets[f"scales/ratios {sr}"] = sr
    return sets, str(train_file), k_scale, size


def plan(ctx: Context, train_file: str | None = None) -> list[Planned]:
    """The YOLOv2 pair per seed, trained with ``train_file`` (default: fitted now by ``_sets``)."""
    r, train_file = ctx.runner, train_file or _sets(ctx, report_files=False)[1]
    return [Planned(r.config(head, train_file, seed, sample=head != "predefined", extra=yolo_overrides(r.scale)),
                    seed, {"head": head}) for seed in ctx.seeds for head in ("predefined", "metaanchor")]


def run(ctx: Context) -> dict:
    t0, r, rows = time.time(), ctx.runner, []
    d = ctx.dir("yolo")
    extra = yolo_overrides(r.scale)
    sets, train_file, k_scale, size = _sets(ctx)
    train_label = f"k-means k={YOLO_K} (training)"
    done = ctx.train(plan(ctx, train_file))
    names = {"predefined": "YOLOv2", "metaanchor": "YOLOv2 + MetaAnchor"}
    for p, run_ in done:
        head = p.info["head"]
        named = list(sets.items()) if head != "predefined" else [(train_label, sets[train_label])]
        for (name, spec), m in zip(named, r.evaluate_sets(run_, ctx.test(), [s for _, s in named])):
            rows.append(row(run_, p.seed, model=names[head], anchors=name, num_anchors=len(AnchorSet.parse(spec)),
                            **metrics(m)))
    ctx.evaluated(done)
    report.write_csv(rows, d / "runs.csv")
    ap, ap50 = report.group(rows, ("anchors", "model")), report.group(rows, ("anchors", "model"), "AP50")
    base, meta = ap[(train_label, "YOLOv2")], ap[(train_label, "YOLOv2 + MetaAnchor")]
    body, b = [], (train_label, "YOLOv2")
    for name, spec in sets.items():
        own = name == train_label
        body.append([name, len(AnchorSet.parse(spec)), report.fmt(ap[b]) if own else "(needs retraining)",
                     report.fmt(ap[(name, "YOLOv2 + MetaAnchor")]), report.fmt(ap50[b]) if own else "",
                     report.fmt(ap50[(name, "YOLOv2 + MetaAnchor")])])
    report.bar_plot({n: ({"YOLOv2": ap[(n, "YOLOv2")]} if n == train_label else {})
                     | {"YOLOv2 + MetaAnchor": ap[(n, "YOLOv2 + MetaAnchor")]} for n in sets},
                    d / "yolo_ap.png", "YOLOv2 vs YOLOv2 + MetaAnchor: test AP per anchor set")
    others = [n for n in sets if n != train_label]
    kept = 100 * float(np.mean([np.mean(ap[(n, "YOLOv2 + MetaAnchor")]) for n in others])) / max(
        1e-9, float(np.mean(meta)))
    verdicts = [("MetaAnchor improves YOLOv2", better(meta, base, f"test AP with the k-means k={YOLO_K} training "
                                                                  "anchors, YOLOv2 + MetaAnchor vs YOLOv2"))]
    runs = [x for _, x in done]
    report.write_readme(d, "yolo: YOLOv2 vs YOLOv2 + MetaAnchor", [
        f"Both detectors are YOLOv2 (`model.arch=yolov2`: single stride-32 grid with the passthrough of the "
        f"stride-16 features, YOLOv2 assignment and loss) trained with the same {YOLO_K} anchors, fitted by "
        f"k-means (distance 1 - IoU) to the training split's boxes as YOLOv2 did "
        f"(`metaanchor.families.yolov2.fit_yolo_anchors`, boxes scaled x{k_scale:.3g} to the input size "
        f"{size}). Baseline: predefined anchors (`model.head=predefined`). MetaAnchor: generated last layer "
        f"(`model.head=metaanchor`), anchor set jittered around the training set each iteration "
        f"(`anchors.sample=true`). MetaAnchor is also evaluated, without retraining, with k-means sets of "
        f"k={', '.join(map(str, YOLO_KS))} and a scales/ratios set (scales at the 25th and 75th percentiles "
        f"of the training boxes' size relative to the 128 px standard box, ratios 0.5, 1, 2); the baseline "
        f"would need retraining for them. Overrides on top of the suite's scale: `{' '.join(extra)}`.",
        scale_section(ctx, runs, time.time() - t0, scale=yolo_scale(r.scale)),
        "## Results (test AP)\n\n" + report.markdown_table(
            ["anchor set", "anchors", "YOLOv2 AP", "YOLOv2 + MetaAnchor AP", "YOLOv2 AP50",
             "YOLOv2 + MetaAnchor AP50"], body) + "\n\n![AP per anchor set](yolo_ap.png)"
        + f"\n\nEvaluated with the other anchor sets without retraining, MetaAnchor kept on average {kept:.0f}% "
          "of its AP with the training set.",
        curves_section(d, {names[h]: [x for p, x in done if p.info["head"] == h] for h in names},
                       "yolo: validation AP of every run"),
        verdict_section(verdicts, "The paper reports that MetaAnchor improves YOLOv2 on COCO; its numbers are "
                        "not available to us.", "The verdict would change if the margin moved across the noise "
                        "(more seeds, longer training)."),
        "Files: `runs.csv` (every run, seed and anchor set), `yolo_ap.png`, `kmeans*.yaml` (the k-means anchor "
        "files, usable with `--anchors`), `val_curves.png`."])
    return {"verdicts": verdicts, "rows": rows}
