"""Checking an exported model against the PyTorch model it came from (``metaanchor export --verify``).

    result = verify(baked, run, images)   # run: onnx_runner(path)[0] or torchscript_runner(path)[0]
    result == {"max_abs_diff": 2e-06, "match": True, "detections": 12, "images": 2}

Raw outputs: the same batch (the model's own ``ImageBatcher``) through the exported graph and
through ``ExportGraph`` in PyTorch, max |difference| over the four outputs. Detections: the
deployed pipeline (``numpy_postprocess.detect``: numpy pre-processing, the exported graph, numpy
post-processing) against the PyTorch model's ``predict``, compared as sets per image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from metaanchor.deploy.graph import ExportGraph

RAW_TOL = 1e-3  # max |difference| of raw outputs accepted (float32 kernels differ by ~1e-6)
BOX_TOL = 1e-2  # px: detections match when boxes are this close ...
SCORE_TOL = 1e-4  # ... scores this close, and labels equal


def verify(baked, run, images: list[Tensor]) -> dict:
    """Compare ``run`` (batch [B, 3, H, W] numpy -> the graph's four numpy outputs) with ``baked`` on
    ``images`` ([3, H, W] float in [0, 1]). Returns max_abs_diff, match (detections match and the
    difference is within ``RAW_TOL``), detections (PyTorch's count) and images."""
    from metaanchor.deploy.graph import metadata
    from metaanchor.deploy.numpy_postprocess import detect

    device = next(baked.parameters()).device
    with torch.no_grad():
        batch = baked.batcher([im.to(device) for im in images])[0]
        expected = [t.cpu().numpy() for t in ExportGraph(baked).eval()(batch)]
    got = [np.asarray(o) for o in run(batch.cpu().numpy())]
    diff = max((float(np.abs(g - e).max(initial=0)) if g.shape == e.shape else math.inf)
               for g, e in zip(got, expected))
    reference = baked.predict(images)
    deployed = detect(run, [im.permute(1, 2, 0).cpu().numpy() for im in images], metadata(baked))
    match = diff <= RAW_TOL and same_detections(reference, deployed)
    return {"max_abs_diff": diff, "match": match, "detections": sum(len(d["scores"]) for d in reference),
            "images": len(images)}


def same_detections(a: list[dict], b: list[dict], box_tol: float = BOX_TOL, score_tol: float = SCORE_TOL) -> bool:
    """Per image, the same detections as a set: equal counts and each detection of ``a`` paired with its
    own one of ``b`` with the same label, boxes within ``box_tol`` px and scores within ``score_tol``
    (torch tensors or numpy arrays; no order, so no float tie decides anything)."""
    if len(a) != len(b):
        return False
    for da, db in zip(a, b):
        boxes_a, boxes_b = np.asarray(da["boxes"], np.float64), np.asarray(db["boxes"], np.float64)
        if len(boxes_a) != len(boxes_b):
            return False
        close = ((np.asarray(da["labels"])[:, None] == np.asarray(db["labels"])[None])
                 & (np.abs(boxes_a[:, None] - boxes_b[None]).max(-1, initial=0) <= box_tol)
                 & (np.abs(np.asarray(da["scores"], np.float64)[:, None]
                           - np.asarray(db["scores"], np.float64)[None]) <= score_tol))  # [Da, Db]
        used = np.zeros(len(boxes_b), bool)
        for row in close:
            free = np.flatnonzero(row & ~used)
            if not free.size:
                return False
            used[free[0]] = True
    return True
