"""ONNX with decoding and NMS inside (``metaanchor export --format onnx --nms``): image in, detections out.

    path = export_onnx_nms(model.bake("5x5"), "model.onnx")
    session = onnxruntime.InferenceSession("model.onnx")
    boxes, scores, labels = session.run(None, {"images": x, "original_size": np.array([H, W])})

Contract (batch 1; stored in the file's metadata as ``"nms": true`` with ``inputs``/``outputs``):

    images         [1, 3, h, w] float32  RGB in [0, 1], the image resized by the model's rule: scale
                                         s = min(min_size / min(H, W), max_size / max(H, W)),
                                         (h, w) = (round(H s), round(W s)), bilinear (half-pixel centres);
                                         ``numpy_postprocess.nms_inputs`` does it with numpy
    original_size  [2] int64             (H, W) of the image before resizing
    ->
    boxes          [D, 4] float32        x1y1x2y2 in the original image's pixels, by decreasing score
    scores         [D]    float32        sigmoid of the class logit (YOLOv2: objectness x class)
    labels         [D]    int64          0..C-1 (``class_names``, ``category_ids`` in the metadata)

Inside: normalise, zero-pad bottom/right to ``size_divisible``, the raw-outputs graph
(``deploy.graph``), then what ``modeling.postprocess`` does: per level the ``topk_candidates``
best (anchor, class) pairs of anchors centred inside the image, sigmoid scores above
``score_thresh``, the family's box decoding (RetinaNet deltas or YOLOv2 t, the model's own box
coder), clipping, per-class NMS (one ONNX ``NonMaxSuppression`` with boxes offset per class),
the ``detections_per_img`` best, scaling to the original image. Exported with torch's
TorchScript-based exporter (``dynamo=False``), which records the shape arithmetic and the
data-dependent sizes (score threshold, NMS) as the ONNX ops that compute them, in seconds; height
and width are dynamic axes.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms

from metaanchor.deploy.graph import METADATA_KEY, ExportGraph, file_metadata
from metaanchor.files import write_atomic

INPUT_NAMES = ("images", "original_size")
OUTPUT_NAMES = ("boxes", "scores", "labels")
EXAMPLE_SIZE = (96, 128)  # (h, w) of the example image traced; any size works afterwards


class DetectionGraph(nn.Module):
    """A baked detector with pre- and post-processing: ([1, 3, h, w], [2]) -> boxes, scores, labels
    (the contract above)."""

    def __init__(self, baked, half: bool = False):
        super().__init__()
        self.network = ExportGraph(baked, half)
        self.register_buffer("mean", baked.batcher.mean.reshape(1, 3, 1, 1).float().clone())
        self.register_buffer("std", baked.batcher.std.reshape(1, 3, 1, 1).float().clone())
        self.divisor = baked.batcher.size_divisible
        self.box_coder = baked.box_coder
        self.num_levels = len(self.network.sizes)
        self.score_thresh, self.nms_thresh = baked.score_thresh, baked.nms_thresh
        self.topk, self.detections = baked.topk_candidates, baked.detections_per_img

    def forward(self, images: Tensor, original_size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        shape = torch._shape_as_tensor(images)[2:]  # (h, w) int64, a Shape op: right at every size
        hw, pad = shape.float(), -shape % self.divisor  # pad: zeros below and to the right
        x = F.pad((images - self.mean) / self.std, [0, pad[1], 0, pad[0]])
        cls_logits, box_deltas, anchors, level_sizes = self.network(x)
        logits, deltas = cls_logits[0], box_deltas[0]  # [A, C], [A, 4]
        idx, scores = self.candidates(logits, anchors, level_sizes, hw)
        c = logits.shape[1]
        anchor_idx, labels = idx // c, idx % c
        boxes = self.box_coder.decode(deltas[anchor_idx], anchors[anchor_idx])  # [N, 4] batch pixels
        upper = torch.stack([hw[1], hw[0], hw[1], hw[0]])
        boxes = torch.minimum(boxes.clamp(min=0), upper)
        offset = labels[:, None].float() * (hw.max() + 1)  # classes apart: one NMS call for all
        keep = nms(boxes + offset, scores, self.nms_thresh)[:self.detections]  # by decreasing score
        size = original_size.float()
        scale = torch.stack([hw[1] / size[1], hw[0] / size[0]]).repeat(2)  # (sx, sy, sx, sy)
        boxes = torch.minimum((boxes[keep] / scale).clamp(min=0), torch.stack([size[1], size[0]]).repeat(2))
        return boxes, scores[keep], labels[keep]

    def candidates(self, logits: Tensor, anchors: Tensor, level_sizes: Tensor, hw: Tensor) -> tuple[Tensor, Tensor]:
        """Per level the ``topk`` best (anchor, class) pairs of anchors centred in the image, scores above
        the threshold: flat indices [N] into the A*C pairs and sigmoid scores [N]."""
        c = logits.shape[1]
        centre = (anchors[:, :2] + anchors[:, 2:]) / 2  # [A, 2] (x, y)
        inside = (centre[:, 0] < hw[1]) & (centre[:, 1] < hw[0])  # [A]
        bounds = torch.cat([level_sizes.new_zeros(1), level_sizes.cumsum(0)])  # [L + 1] first anchor of each level
        padding = torch.full((self.topk,), float("-inf"))  # so every level has at least topk pairs
        values, indices = [], []
        for lvl in range(self.num_levels):
            rows = torch.arange(bounds[lvl], bounds[lvl + 1])  # [A_l] the level's anchors (a Range op)
            pairs = torch.where(inside[rows][:, None], logits[rows], float("-inf")).reshape(-1)  # [A_l * C]
            v, i = torch.cat([pairs, padding]).topk(self.topk)  # i >= A_l * C: padding, value -inf
            values.append(v)
            indices.append(rows[(i // c).clamp(max=rows.shape[0] - 1)] * c + i % c)
        values, indices = torch.cat(values), torch.cat(indices)  # [L * topk]
        scores = torch.sigmoid(values)
        keep = (scores > self.score_thresh) & (values > float("-inf"))
        return indices[keep], scores[keep]


def onnx_nms_bytes(baked, half: bool = False, opset: int = 18) -> bytes:
    """The serialised ONNX model (detection graph + metadata) of a baked detector."""
    import onnx

    graph = DetectionGraph(baked, half).eval()
    h, w = EXAMPLE_SIZE
    example = (torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)), torch.tensor([h, w]))
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(graph, example, buf, dynamo=False, opset_version=opset, input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), do_constant_folding=True,
                          dynamic_axes={"images": {2: "height", 3: "width"}, "boxes": {0: "detections"},
                                        "scores": {0: "detections"}, "labels": {0: "detections"}})
    model = onnx.load_from_string(buf.getvalue())
    meta = file_metadata(baked, half, nms=True, inputs=list(INPUT_NAMES), outputs=list(OUTPUT_NAMES))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    model.producer_name = "metaanchor"
    return model.SerializeToString()


def export_onnx_nms(baked, path: str | Path, half: bool = False) -> Path:
    """Write the ONNX detection graph of a baked detector to ``path`` (atomically); returns the path."""
    data = onnx_nms_bytes(baked, half)
    return write_atomic(path, lambda f: f.write(data))
