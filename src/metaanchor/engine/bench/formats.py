"""One checkpoint in each deployment format: file size, images/s and, with a dataset, COCO AP.

    rows = bench_formats(candidates, images, rounds=5, dataset=val_set)
    print(format_formats(rows))

A candidate is one format already written to disk: its name, file, the device it runs on and a
``predict(images) -> detections`` function (``images``: list of [3, H, W] float tensors in [0, 1];
detections per image {"boxes": [D, 4] x1y1x2y2 pixels of that image, "scores": [D], "labels": [D]
class indices}, tensors or numpy arrays). The caller (``metaanchor bench --checkpoint``) builds the
candidates from the deployment runners; here they are timed against each other in interleaved
rounds and evaluated with the same COCO protocol as ``metaanchor eval``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from metaanchor.engine.bench.timing import interleaved
from metaanchor.engine.evaluate import coco_metrics, fmt_metric, to_coco_results


@dataclass
class Candidate:
    """A format to time: ``predict(list of [3, H, W] images) -> per-image detections``; ``evaluate``:
    optional COCO metrics of the format on a dataset (default: ``predict`` over the dataset)."""

    name: str
    path: Path | None
    device: str
    predict: Callable[[list], list[dict]]
    evaluate: Callable[[object], dict] | None = None


@dataclass
class FormatRow:
    """One line of the table: ``images_per_s`` median (min..max) over rounds; ``note`` when skipped."""

    name: str
    device: str = "-"
    size_mb: float | None = None
    images_per_s: float | None = None
    images_per_s_min: float | None = None
    images_per_s_max: float | None = None
    ap: float | None = None
    ap50: float | None = None
    note: str = ""
    metrics: dict = field(default_factory=dict, repr=False)


def in_batches(predict: Callable[[list], list[dict]], images: list, batch_size: int) -> list[dict]:
    """``predict`` over ``images`` ``batch_size`` at a time; the detections of all, in order."""
    out = []
    for i in range(0, len(images), batch_size):
        out += predict(images[i:i + batch_size])
    return out


def dataset_metrics(predict: Callable[[list], list[dict]], dataset, batch_size: int = 8) -> dict:
    """COCO metrics (``evaluate.coco_metrics``) of ``predict`` on every image of a ``CocoDataset``."""
    dets, ids = [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        dets += predict([img for img, _ in items])
        ids += [int(t["image_id"]) for _, t in items]
    return coco_metrics(dataset.coco, to_coco_results(dets, ids, dataset.cat_ids), ids)


def bench_formats(candidates: list[Candidate], images: list, rounds: int = 5, batch_size: int = 1,
                  dataset=None, skipped: list[FormatRow] = (), log=print) -> list[FormatRow]:
    """Time every candidate on ``images`` ([3, H, W] in [0, 1]) in interleaved rounds (each round: all
    images, ``batch_size`` per call, after one warm-up pass) and, with ``dataset``, evaluate each on it.
    ``skipped``: rows of formats that could not be written or run, kept in the table with their note."""
    if not images:
        raise ValueError("no images to time")
    rows = {c.name: FormatRow(c.name, c.device, _size_mb(c.path)) for c in candidates}
    fns = {c.name: (lambda c=c: in_batches(c.predict, images, batch_size)) for c in candidates}
    with torch.inference_mode():
        times = interleaved(fns, rounds, "cpu")
    for name, t in times.items():
        rate = [len(images) / s for s in t]
        rows[name].images_per_s = statistics.median(rate)
        rows[name].images_per_s_min, rows[name].images_per_s_max = min(rate), max(rate)
    if dataset is not None:
        for c in candidates:
            log(f"evaluating {c.name} on {len(dataset)} images")
            with torch.inference_mode():
                m = c.evaluate(dataset) if c.evaluate else dataset_metrics(c.predict, dataset)
            rows[c.name].ap, rows[c.name].ap50 = m["AP"], m["AP50"]
            rows[c.name].metrics = {k: v for k, v in m.items() if k not in ("summary", "pr50")}
    return [rows[c.name] for c in candidates] + list(skipped)


def _size_mb(path: Path | None) -> float | None:
    return path.stat().st_size / 1e6 if path is not None and path.is_file() else None


def format_formats(rows: list[FormatRow]) -> str:
    """The table: format, device, file size (MB), images/s median (min..max), AP, AP50; then the notes."""
    lines = [f"{'format':<13}{'device':>8}{'size MB':>9}{'images/s (min..max)':>24}{'AP':>8}{'AP50':>8}"]
    for r in rows:
        size = "-" if r.size_mb is None else f"{r.size_mb:.1f}"
        speed = ("-" if r.images_per_s is None
                 else f"{r.images_per_s:.2f} ({r.images_per_s_min:.2f}..{r.images_per_s_max:.2f})")
        lines.append(f"{r.name:<13}{r.device:>8}{size:>9}{speed:>24}{fmt_metric(r.ap):>8}{fmt_metric(r.ap50):>8}")
    lines += [f"{r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(lines)


def rows_json(rows: list[FormatRow]) -> list[dict]:
    """The rows as JSON-ready dicts (per-class tables and curves left out)."""
    return [{k: v for k, v in vars(r).items()} for r in rows]
