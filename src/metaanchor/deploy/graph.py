"""The exported graph: a baked detector without pre- or post-processing (ONNX and TorchScript alike).

    graph = ExportGraph(baked)                    # baked = model.bake(anchors)
    cls_logits, box_deltas, anchors, level_sizes = graph(batch)

Input ``images``: a normalised, zero-padded batch [B, 3, H, W] float32 (what the model's
``ImageBatcher`` makes: resize, (x - mean) / std, pad bottom/right to a multiple of
``size_divisible``; ``numpy_postprocess.preprocess`` does the same without torch).
Outputs (B, H and W dynamic):

    cls_logits   [B, A, C] float32  class logits; sigmoid = score (YOLOv2: objectness x class)
    box_deltas   [B, A, 4] float32  box parameters for the family's coding (``METADATA["box_coding"]``):
                                    RetinaNet (dx, dy, dw, dh) deltas, YOLOv2 (tx, ty, tw, th)
    anchors      [A, 4]    float32  x1y1x2y2 anchors in batch pixels, level by level, position, anchor
    level_sizes  [L]       int64    anchors per pyramid level (sum = A), for the per-level top-k

Decode, per-class NMS and top-k run after the graph (``numpy_postprocess.postprocess``, or
``metaanchor.modeling.postprocess`` in torch), except in ONNX files written with ``--nms``
(``deploy.onnx_nms``). ``metadata(baked)`` is everything the post-processor needs; the exporters
store it in the file as JSON under ``METADATA_KEY``, with ``precision`` and ``input_dtype``
(``file_metadata``).

``ExportGraph(baked, half=True)`` runs the network in float16 (weights and activations); it still
takes a float32 batch (cast inside) and returns float32 outputs, so the same pre- and
post-processing serve both precisions.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from metaanchor.errors import UserError
from metaanchor.geometry.anchors import grid_anchors

INPUT_NAME = "images"
OUTPUT_NAMES = ("cls_logits", "box_deltas", "anchors", "level_sizes")
METADATA_KEY = "metaanchor"
FORMAT_VERSION = 1


class ExportGraph(nn.Module):
    """A baked (predefined-anchor) detector as batch [B, 3, H, W] -> the four raw outputs above."""

    def __init__(self, baked, half: bool = False):
        super().__init__()
        if baked.head_type != "predefined":
            raise ValueError("ExportGraph needs a baked model (model.bake(anchors)): no generator at run time")
        check_exportable(baked)
        self.model = copy.deepcopy(baked).half() if half else baked
        self.half = half
        self.sizes = baked.anchors.sizes(baked.standard_sizes)  # per level [K_l, 2] (h, w) pixels

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        features = self.model.backbone(images.half() if self.half else images)  # per level [B, ch, H_l, W_l]
        cls_logits, box_deltas = self.model.raw_outputs(features, exportable=True)
        anchors = grid_anchors(self.sizes, [f.shape[-2:] for f in features], self.model.strides, images.device)
        if torch.compiler.is_exporting():  # torch.export: shapes are symbolic ints, valid at every size
            level_sizes = torch.stack([torch.full((), f.shape[-2] * f.shape[-1] * len(s), dtype=torch.int64)
                                       for f, s in zip(features, self.sizes)])
        else:  # shapes as tensors, so a traced graph computes them for every input size
            level_sizes = torch.stack([torch._shape_as_tensor(f)[-2:].prod() * len(s)
                                       for f, s in zip(features, self.sizes)])
        return cls_logits.float(), box_deltas.float(), anchors, level_sizes


# Model settings the exported graphs and numpy_postprocess do not reproduce, with the value they assume:
# torchvision's resize rule, its per-batch anchor strides, detections from anchors centred in the padding.
ASSUMED = {"transform": "metaanchor", "grid_strides": "nominal", "skip_padding_anchors": True}


def check_exportable(baked) -> None:
    """Refuse (UserError) a model whose settings the exported pipeline would not reproduce (``ASSUMED``)."""
    config = getattr(baked, "config", {})
    other = [f"model.{k}={config[k]}" for k, v in ASSUMED.items() if k in config and config[k] != v]
    if other:
        expected = ", ".join(f"{k}={v}" for k, v in ASSUMED.items())
        raise UserError(f"{', '.join(other)}: the exported graphs and numpy_postprocess follow this library's "
                        f"pre-processing, anchor placement and padding rule ({expected}), so they would not give "
                        "this model's detections; export it as --format torchvision")


def metadata(baked) -> dict:
    """What pre- and post-processing need, as plain JSON values."""
    b = baked.batcher
    return {"format_version": FORMAT_VERSION, "arch": baked.arch, "anchors": baked.anchors.spec,
            "input": INPUT_NAME, "outputs": list(OUTPUT_NAMES),
            "min_size": b.min_size, "max_size": b.max_size, "size_divisible": b.size_divisible,
            "mean": b.mean.flatten().tolist(), "std": b.std.flatten().tolist(),
            "box_coding": baked.box_coder.to_dict(), "score_thresh": baked.score_thresh, "nms_thresh": baked.nms_thresh,
            "topk_candidates": baked.topk_candidates, "detections_per_img": baked.detections_per_img,
            "class_names": list(baked.class_names), "category_ids": list(baked.category_ids)}


def file_metadata(baked, half: bool = False, **extra) -> dict:
    """``metadata(baked)`` plus how the file computes: ``precision`` (float32 or float16 weights and
    activations) and ``input_dtype`` (always float32: a float16 graph casts its input), and ``extra``."""
    return metadata(baked) | {"precision": "float16" if half else "float32", "input_dtype": "float32"} | extra
