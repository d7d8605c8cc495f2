"""Export to torchvision's ``RetinaNet``.

Export (``metaanchor export --format torchvision``; a MetaAnchor model is baked to a
predefined-anchor one first) writes two files:

    OUT.pth    a plain state dict: torchvision's own RetinaNet loads it with ``strict=True``
    OUT.json   how to build that RetinaNet: backbone, classes, transform, post-processing and
               the exact anchors (``load_torchvision_export`` does it)

    net = load_torchvision_export("retina.pth")      # a torchvision RetinaNet, eval mode
    # by hand: build torchvision.models.detection.RetinaNet as OUT.json says, then
    # net.anchor_generator.cell_anchors = [torch.tensor(a) for a in build["anchors"]["cell_anchors"]]
    # net.load_state_dict(torch.load("retina.pth"))

The anchors are given as torchvision's ``cell_anchors`` (per level [K, 4] x1y1x2y2 centred at 0):
``AnchorGenerator(sizes, aspect_ratios)`` rounds its boxes to whole pixels, so the nominal sizes alone
would not reproduce ours. Order (ratio-major, then scale; per position; centres at x * stride) and
channel layout (anchor-major, then class) are the same in both libraries.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor
from torchvision.models.detection import RetinaNet

from metaanchor import checkpoint as ckpt
from metaanchor.deploy.torchvision_layout import (
    BUILD_FORMAT,
    build_torchvision_retinanet,
    read_state_dict,
    torchvision_build,
    torchvision_state_dict,
)
from metaanchor.deploy.verify import same_detections
from metaanchor.errors import UserError
from metaanchor.families.retinanet import RetinaNetDetector
from metaanchor.files import write_atomic, write_text
from metaanchor.readers import read_json_file


def sidecar_path(output: str | Path) -> Path:
    """Where the build description of an exported state dict goes: OUT.pth -> OUT.json."""
    return Path(output).with_suffix(".json")


def export_torchvision(model: RetinaNetDetector, output: str | Path) -> Path:
    """Write a predefined-anchor model as torchvision RetinaNet weights (OUT, a plain state dict loadable
    with ``strict=True``) and its build description (OUT.json, see ``load_torchvision_export``). Returns OUT."""
    output = Path(output)
    if output.suffix == ".json":
        raise UserError(f"--output {output}: the state dict needs another name (e.g. .pth); "
                        "its build description is written next to it as .json")
    state = torchvision_state_dict(model)
    build = torchvision_build(model)
    write_atomic(output, lambda f: ckpt.save_into(state, f, output))
    write_text(sidecar_path(output), json.dumps(build, indent=1) + "\n")
    return output


def load_torchvision_export(output: str | Path) -> RetinaNet:
    """The torchvision RetinaNet an ``export_torchvision`` file describes, its weights loaded strictly (eval)."""
    output = Path(output)
    side = sidecar_path(output)
    build = read_json_file(side, f"{side} (the build description of {output})", "MAX_SIDECAR_BYTES")
    if not isinstance(build, dict) or build.get("format") != BUILD_FORMAT:
        raise UserError(f"{side}: not a {BUILD_FORMAT} build description")
    net = build_torchvision_retinanet(build)
    net.load_state_dict(read_state_dict(output, "--output"), strict=True)
    return net


@torch.inference_mode()
def verify_torchvision(model: RetinaNetDetector, output: str | Path, images: list[Tensor],
                       tol: float = 1e-4) -> dict:
    """Check an exported file against ``model`` (predefined head, the exported anchors).

    Args:
        images: [3, H, W] floats in [0, 1].
    Returns:
        {"max_abs_diff": largest |difference| of the raw head outputs (logits and box deltas, both heads
        run on our batch), "match": both full pipelines (transform, anchors, post-processing) give the same
        detections (same count, labels, scores within ``tol``, boxes within 1e-2 px), "detections": how many
        detections of ours were compared (all images)}.
    """
    net = load_torchvision_export(output)
    model.eval()
    batch, _, _ = model._batch(images)
    ours = model.head(model.backbone(batch))
    outs = net.head(list(net.backbone(batch).values()))
    theirs = (outs["cls_logits"], outs["bbox_regression"])
    diff = max(float((a - b).abs().max()) for a, b in zip(ours, theirs))
    ours, theirs = model(images), net(images)
    match = same_detections(ours, theirs, score_tol=tol)
    return {"max_abs_diff": diff, "match": match, "detections": sum(len(d["scores"]) for d in ours)}


