"""``make demo``: synthesise data, train a small MetaAnchor detector, evaluate and draw.

Everything lands in the run folder (default ``runs/demo``):
    data/train, data/val     synthetic datasets (written once, reused)
    last.pt, config.yaml, metrics.csv, TensorBoard events
    demo.png                 detections on validation images with two anchor sets
    anchors.png              the two anchor sets
    metrics.json             COCO metrics per anchor set
"""

from __future__ import annotations

import json
from pathlib import Path

from metaanchor.config import load_config, set_key
from metaanchor.data.coco import CocoDataset
from metaanchor.data.synth import synth_config, write_synth_dataset
from metaanchor.engine.evaluate import fmt_metric
from metaanchor.engine.train import train
from metaanchor.families.retinanet import RetinaNetDetector as Detector
from metaanchor.files import make_folder, write_text
from metaanchor.geometry.anchors import AnchorSet
from metaanchor.visualize import detection_grid, draw_detections, plot_anchor_sets

DEMO_TRAIN_IMAGES = 800
DEMO_VAL_IMAGES = 150
NUM_PICTURES = 5


def make_data(root: Path) -> tuple[Path, Path]:
    """Write the demo's train/val synthetic sets (different seeds) unless present."""
    make_folder(root, root.parent)  # inside the run folder, never through a symlink to elsewhere
    paths = []
    for name, n, seed in (("train", DEMO_TRAIN_IMAGES, 0), ("val", DEMO_VAL_IMAGES, 1)):
        path = root / name
        if not (path / "annotations.json").is_file():
            write_synth_dataset(path, n, synth_config("default", seed=seed))
        paths.append(path)
    return paths[0], paths[1]


def run_demo(config: str, out: str, unseen: str, overrides: list[str]) -> dict:
    out = Path(out)
    train_dir, val_dir = make_data(out / "data")
    cfg = load_config(config, overrides)
    set_key(cfg, "data.train", str(train_dir))
    set_key(cfg, "data.val", str(val_dir))
    seen = cfg["anchors"]["train"]
    set_key(cfg, "anchors.eval", [unseen])
    summary = train(cfg, out)

    model = Detector.from_checkpoint(out / "last.pt")
    val = CocoDataset(val_dir)
    images = [val[i][0] for i in range(NUM_PICTURES)]
    rows = {}
    for spec in (seen, unseen):
        dets = model.predict(images, anchors=spec)
        rows[spec] = [draw_detections(im, d, model.class_names) for im, d in zip(images, dets)]
    detection_grid(rows, out / "demo.png")
    plot_anchor_sets({seen: AnchorSet.parse(seen), unseen: AnchorSet.parse(unseen)}, out / "anchors.png")
    metrics = {spec: {k: v for k, v in m.items() if k != "summary"} for spec, m in summary["metrics"].items()}
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))

    print(f"\nMetaAnchor demo: {summary['iterations']} iterations in {summary['wall_time_s']:.0f} s")
    print(f"{'anchor set':<24}{'AP':>8}{'AP50':>8}{'AP75':>8}")
    for spec, m in metrics.items():
        label = f"{spec} ({'training' if spec == seen else 'never seen'})"
        print(f"{label:<24}" + "".join(f"{fmt_metric(m[k]):>8}" for k in ("AP", "AP50", "AP75")))
    print(f"\ncheckpoint: {out / 'last.pt'}\npictures:   {out / 'demo.png'}, {out / 'anchors.png'}")
    return metrics
