"""ONNX export of a baked detector: the raw-outputs graph of ``deploy.graph`` with dynamic batch and size.

    path = export_onnx(model.bake("5x5"), "model.onnx")
    run, meta = onnx_runner("model.onnx")          # onnxruntime, CPU
    dets = numpy_postprocess.detect(run, images, meta)

Exporter: torch's TorchScript-based ``torch.onnx.export(..., dynamo=False)``, opset ``OPSET``.
The torch.export-based exporter (``dynamo=True``, torch's default since 2.9) needs the
``onnxscript`` package, which this project does not install; the graph has no control
flow, so tracing it is exact. Batch, height and width are dynamic axes (anchors and
level sizes are computed from the feature-map shapes inside the graph). Pre-processing
(resize, normalise, pad) and post-processing (decode, per-class NMS, top-k) stay outside
(``deploy.numpy_postprocess``): NMS and per-image top-k have data-dependent shapes that
the tracing exporter would freeze at the example's sizes. The post-processor's settings
are stored in the model's ``metadata_props`` under ``"metaanchor"`` (JSON).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from metaanchor.deploy.graph import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, ExportGraph, metadata
from metaanchor.files import write_atomic

OPSET = 17
EXAMPLE_SIZE = 128  # side of the example batch traced (any multiple of the largest stride)


def onnx_bytes(baked) -> bytes:
    """The serialised ONNX model (raw-outputs graph + metadata) of a baked detector."""
    import onnx

    graph = ExportGraph(baked).eval()
    device = next(baked.parameters()).device
    side = max(EXAMPLE_SIZE, baked.batcher.size_divisible)
    example = torch.zeros(1, 3, side, side, device=device)
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, "cls_logits": {0: "batch", 1: "anchors"},
            "box_deltas": {0: "batch", 1: "anchors"}, "anchors": {0: "anchors"}}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(graph, (example,), buf, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), dynamic_axes=axes, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata(baked))
    model.producer_name = "metaanchor"
    return model.SerializeToString()


def export_onnx(baked, path: str | Path) -> Path:
    """Write the ONNX model of a baked detector to ``path`` (atomically); returns the path."""
    data = onnx_bytes(baked)
    return write_atomic(path, lambda f: f.write(data))


def onnx_runner(path: str | Path, threads: int | None = None):
    """(run, meta): ``run(batch [B, 3, H, W] float32 numpy)`` -> the four outputs as numpy arrays,
    on onnxruntime's CPU provider (``threads`` intra-op threads, default onnxruntime's)."""
    import onnxruntime as ort

    from metaanchor.deploy.numpy_postprocess import metadata as read_metadata

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return (lambda batch: session.run(None, {INPUT_NAME: batch})), read_metadata(session)
