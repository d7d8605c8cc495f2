"""Pictures: detections drawn on images, anchor sets, box shapes, metric curves.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``), imported on
first use: pyplot's global state and the user's backend are never touched, so these work
the same in a notebook, a script and a headless server.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from metaanchor.files import write_atomic
from metaanchor.geometry.anchors import AnchorSet


def _figure(nrows: int = 1, ncols: int = 1, figsize=(5.5, 4.5)):
    """A new figure (not registered with pyplot) and its [nrows][ncols] axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
           "#fabebe", "#008080", "#e6beff", "#9a6324"]


def draw_detections(image: Tensor, det: dict, class_names: list[str], min_score: float = 0.3) -> Image.Image:
    """image [3, H, W] in [0, 1], det {"boxes", "scores", "labels"} -> PIL image with boxes and labels."""
    keep = det["scores"] >= min_score
    boxes, scores, labels = det["boxes"][keep], det["scores"][keep], det["labels"][keep]
    img = (image.clamp(0, 1) * 255).to(torch.uint8).cpu()
    text = [f"{class_names[int(lab)]} {float(s):.2f}" for lab, s in zip(labels, scores)]
    colors = [PALETTE[int(lab) % len(PALETTE)] for lab in labels]
    if len(boxes):
        img = draw_bounding_boxes(img, boxes.cpu(), labels=text, colors=colors, width=2)
    return Image.fromarray(img.permute(1, 2, 0).numpy())


def plot_anchor_sets(sets: dict[str, AnchorSet], path: str | Path, standard_size: float = 32.0) -> Path:
    """Draw anchor shapes (centred, relative to one level's standard box) for each set side by side."""
    from matplotlib.patches import Rectangle

    fig, axes = _figure(1, len(sets), figsize=(3.2 * len(sets), 3.4))
    for ax, (name, aset) in zip(axes[0], sets.items()):
        sizes = aset.sizes([standard_size] * (len(aset.per_level) if aset.per_level else 1))[0]
        lim = float(sizes.max()) * 0.6
        for i, (h, w) in enumerate(sizes.tolist()):
            ax.add_patch(Rectangle((-w / 2, -h / 2), w, h, fill=False, lw=1.5, color=PALETTE[i % len(PALETTE)]))
        ax.add_patch(Rectangle((-standard_size / 2, -standard_size / 2), standard_size, standard_size,
                                   fill=False, ls="--", color="k", lw=1))
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"{name} ({len(sizes)} anchors)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("anchor shapes at P3 (dashed: standard box)")
    return _save(fig, path)


def detection_grid(rows: dict[str, list[Image.Image]], path: str | Path) -> Path:
    """One row of drawn images per anchor set -> a single PNG."""
    ncols = max(len(v) for v in rows.values())
    fig, axes = _figure(len(rows), ncols, figsize=(2.6 * ncols, 2.8 * len(rows)))
    for r, (name, images) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c])
            if c == 0:
                ax.set_title(f"anchors {name}", loc="left", fontsize=10)
    return _save(fig, path)


def plot_pr_curves(pr50: dict, path: str | Path, title: str = "precision-recall at IoU 0.5") -> Path:
    """Precision vs recall per class and over all classes (``coco_metrics``'s ``pr50``) -> PNG.

    ``pr50`` = {"recall": [R], "precision": {class name or "all": [R]}} (pycocotools' 101 recall points).
    """
    fig, ((ax,),) = _figure(figsize=(5.5, 4.5))
    recall = pr50["recall"]
    for i, (name, precision) in enumerate(pr50["precision"].items()):
        bold = name == "all"
        ax.plot(recall, precision, color="k" if bold else PALETTE[i % len(PALETTE)], lw=2.5 if bold else 1.2,
                label=f"{name} (AP50 {sum(precision) / len(precision):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def _metrics_rows(metrics_csv: str | Path) -> list[dict]:
    """The rows of a run's ``metrics.csv`` that belong to an iteration."""
    import csv

    with open(metrics_csv, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("iter", "").isdigit()]


def _curves(ax, rows: list[dict], keys, ylabel: str, title: str, style=None) -> None:
    """One line per key of ``rows`` vs iteration (a missing value is a gap); ``style(i, key)`` -> plot kwargs."""
    iters = [int(r["iter"]) for r in rows]
    for i, key in enumerate(keys):
        ax.plot(iters, [float(r[key]) if r.get(key) else float("nan") for r in rows], label=key,
                **(style(i, key) if style else {}))
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)


def _val_ap(ax, rows: list[dict]) -> None:
    styles = {"AP": {"marker": "o", "linestyle": "-"}, "AP50": {"marker": "s", "linestyle": "--"}}
    _curves(ax, rows, styles, "validation metric", "validation AP", lambda i, key: styles[key] | {"ms": 4})


def plot_val_curve(metrics_csv: str | Path, path: str | Path) -> Path | None:
    """Validation AP and AP50 vs iteration from a run's ``metrics.csv`` -> PNG (None: no evaluated rows)."""
    rows = [r for r in _metrics_rows(metrics_csv) if r.get("AP")]
    if not rows:
        return None
    fig, ((ax,),) = _figure(figsize=(5.5, 4))
    _val_ap(ax, rows)
    return _save(fig, path)


LOSS_KEYS = ("loss", "cls", "box", "obj")


def plot_results(metrics_csv: str | Path, path: str | Path) -> Path | None:
    """Training losses and validation AP/AP50 vs iteration from a run's ``metrics.csv`` -> PNG: one panel
    of losses, and one of metrics when the run was evaluated (None: no training rows)."""
    rows = _metrics_rows(metrics_csv)
    train = [r for r in rows if r.get("loss")]
    if not train:
        return None
    val = [r for r in rows if r.get("AP")]
    fig, axes = _figure(1, 2 if val else 1, figsize=(10 if val else 5.5, 4))
    keys = [k for k in LOSS_KEYS if any(r.get(k) for r in train)]
    _curves(axes[0][0], train, keys, "training loss", "training losses",
            lambda i, key: {"color": "k" if key == "loss" else PALETTE[i % len(PALETTE)],
                            "lw": 2 if key == "loss" else 1.2})
    if val:
        _val_ap(axes[0][1], val)
    return _save(fig, path)


def plot_box_shapes(shapes, level_anchors: dict, path: str | Path,
                    title: str = "box shapes at input scale") -> Path:
    """Scatter of box shapes (log w vs log h) with each level's anchor shapes over them -> PNG.

    ``shapes`` [N, 2] (h, w) px; ``level_anchors`` {level name: [A, 2] (h, w) px}.
    """
    import numpy as np

    shapes = np.asarray(shapes, dtype=np.float64)
    fig, ((ax,),) = _figure(figsize=(6, 5.5))
    ax.scatter(shapes[:, 1], shapes[:, 0], s=4, alpha=0.25, color="0.4", label=f"boxes ({len(shapes)})")
    for i, (name, a) in enumerate(level_anchors.items()):
        a = np.asarray(a, dtype=np.float64)
        ax.scatter(a[:, 1], a[:, 0], s=60, marker="x", color=PALETTE[i % len(PALETTE)], label=f"anchors {name}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("box width (px, log scale)")
    ax.set_ylabel("box height (px, log scale)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Write a figure as PNG (atomically, a one-line WriteError when it cannot)."""
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return Path(path)


def plot_confusion_matrix(matrix, class_names: list[str], path: str | Path, conf: float, iou: float) -> Path:
    """A [C + 1, C + 1] confusion matrix (rows ground truth, columns predicted, last: background) -> PNG of two
    panels: the counts, and each row divided by its sum (the share of a class's boxes predicted as each class
    or missed; the background row: how the false positives spread over the classes)."""
    import numpy as np

    counts = np.asarray(matrix, dtype=np.float64)
    sums = counts.sum(1, keepdims=True)
    shares = np.divide(counts, sums, out=np.zeros_like(counts), where=sums > 0)
    names = [*class_names, "background"]
    n = len(names)
    side = min(4 + 0.45 * n, 16)
    fig, axes = _figure(1, 2, figsize=(2 * side + 1, side))
    for ax, values, title, fmt in ((axes[0][0], counts, "counts", "{:.0f}"),
                                   (axes[0][1], shares, "normalised by row (ground truth)", "{:.2f}")):
        im = ax.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-9))
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if n <= 30:  # numbers in the cells while they stay legible
            for (r, c), v in np.ndenumerate(values):
                if v:
                    ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=8,
                            color="white" if v > 0.6 * values.max() else "black")
        ax.set_xticks(range(n), names, rotation=90 if n > 6 else 0, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        ax.set_title(title)
    fig.suptitle(f"confusion matrix at score >= {conf:g}, IoU >= {iou:g} (background column: missed, "
                 "background row: false positives)", fontsize=10)
    return _save(fig, path)


def plot_prf_curves(thresholds, curves: dict[str, dict], path: str | Path, iou: float) -> Path:
    """Precision, recall and F1 vs confidence threshold -> PNG of three panels.

    ``thresholds`` [T]; ``curves`` {class name or "all": {"precision": [T], "recall": [T], "f1": [T]}}; "all"
    is drawn bold, and its best F1 is marked.
    """
    import numpy as np

    t = np.asarray(thresholds, dtype=np.float64)
    fig, axes = _figure(1, 3, figsize=(15, 4.5))
    for ax, key in zip(axes[0], ("precision", "recall", "f1")):
        for i, (name, c) in enumerate(curves.items()):
            bold = name == "all"
            ax.plot(t, c[key], color="k" if bold else PALETTE[i % len(PALETTE)], lw=2.5 if bold else 1.2,
                    label=name)
        if "all" in curves and key == "f1":
            best = int(np.argmax(curves["all"]["f1"]))
            ax.plot([t[best]], [curves["all"]["f1"][best]], "o", color="k", ms=6)
            ax.set_title(f"F1 (all: best {curves['all']['f1'][best]:.3f} at {t[best]:.2f})")
        else:
            ax.set_title(key)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence threshold")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"precision, recall and F1 vs confidence at IoU >= {iou:g}", fontsize=10)
    return _save(fig, path)


REACHED_COLOR, UNREACHED_COLOR = "#3cb44b", "#ff1a1a"  # ground truth an anchor reaches / none reaches (warning)


def draw_anchor_matches(image: Tensor, view: dict, level_names: list[str],
                        size: tuple[int, int] | None = None) -> Image.Image:
    """Ground truth and the anchor each box is matched to (``engine.anchor_view.anchor_matches``) -> PIL image.

    image [3, H, W] in [0, 1]; ``view`` {"boxes" [G, 4], "anchor" [G, 4] x1y1x2y2 image pixels, "iou" [G],
    "level" [G], "reached" [G]}; ``size`` (h, w): draw at that size (e.g. the network's input size) instead.
    Reached boxes are green, unreached ones red and thicker; each best anchor is drawn thin in its level's
    colour, labelled with its level and IoU.
    """
    boxes, anchors, reached = view["boxes"].cpu(), view["anchor"].cpu(), view["reached"].cpu()
    if size is not None and tuple(size) != tuple(image.shape[-2:]):
        f = torch.tensor([size[1] / image.shape[-1], size[0] / image.shape[-2]] * 2)
        boxes, anchors = boxes * f, anchors * f
        image = torch.nn.functional.interpolate(image[None].float(), size=tuple(size), mode="bilinear",
                                                align_corners=False)[0]
    img = (image.clamp(0, 1) * 255).to(torch.uint8).cpu()
    if len(boxes):
        text = [f"{level_names[int(lv)]} {float(iou):.2f}" for lv, iou in zip(view["level"], view["iou"])]
        colors = [PALETTE[(int(lv) + 2) % len(PALETTE)] for lv in view["level"]]
        h, w = img.shape[-2:]
        shown = anchors.clone()
        shown[:, 0::2], shown[:, 1::2] = shown[:, 0::2].clamp(0, w - 1), shown[:, 1::2].clamp(0, h - 1)
        img = draw_bounding_boxes(img, shown, labels=text, colors=colors, width=1)
        for ok, color, width in ((True, REACHED_COLOR, 2), (False, UNREACHED_COLOR, 3)):
            keep = reached == ok
            if keep.any():
                labels = None if ok else ["unreached"] * int(keep.sum())
                img = draw_bounding_boxes(img, boxes[keep], labels=labels, colors=color, width=width)
    return Image.fromarray(img.permute(1, 2, 0).numpy())
