"""ONNX export of a baked detector: the raw-outputs graph of ``deploy.graph`` with dynamic batch and size.

    path = export_onnx(model.bake("5x5"), "model.onnx")
    run, meta = onnx_runner("model.onnx")          # onnxruntime, CPU
    dets = numpy_postprocess.detect(run, images, meta)

Exporter (``exporter=``, ``metaanchor export --onnx-exporter``): ``dynamo`` (default) is torch's
torch.export-based ``torch.onnx.export(..., dynamo=True)`` (needs ``onnxscript``), from the same
``ExportedProgram`` as ``--format pt2`` (``pt2_export.export_program``): batch, height and width
are symbolic dimensions, the level sizes expressions of them. When it fails (``onnxscript``
missing, an op it cannot translate), ``legacy``, torch's TorchScript-based exporter
(``dynamo=False``) writes the file instead, with a one-line ``ExporterFallback`` warning saying
why; its graph is traced at one size, with batch, height and width as dynamic axes (anchors and
level sizes computed from the feature-map shapes inside the graph). Either way opset ``OPSET``.
Pre-processing (resize, normalise, pad) and post-processing (decode, per-class NMS, top-k) stay
outside (``deploy.numpy_postprocess``), unless ``--nms`` (``deploy.onnx_nms``). The
post-processor's settings are stored in the model's ``metadata_props`` under ``"metaanchor"``
(JSON), with ``exporter`` and ``precision``.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from metaanchor.deploy.graph import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, ExportGraph, file_metadata
from metaanchor.errors import UserError
from metaanchor.files import write_atomic

OPSET = 18
EXPORTERS = ("dynamo", "legacy")
EXAMPLE_SIZE = 128  # side of the example batch the legacy exporter traces (any multiple of the largest stride)


class ExporterFallback(UserWarning):
    """The dynamo ONNX exporter failed and the legacy one wrote the file (message: why)."""


def onnx_bytes(baked, exporter: str = "dynamo", half: bool = False, program=None) -> bytes:
    """The serialised ONNX model (raw-outputs graph + metadata) of a baked detector. ``program``: its
    ``pt2_export.export_program(baked, half)`` when already made (dynamo only)."""
    import onnx

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter={exporter!r}: choose one of {', '.join(EXPORTERS)}")
    model = None
    if exporter == "dynamo":
        try:
            model = _dynamo_model(baked, half, program)
        except UserError:  # the model, not the exporter: the legacy one would refuse it too
            raise
        except Exception as e:  # any failure of the new exporter: the legacy one still writes a correct file
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            warnings.warn(ExporterFallback(f"ONNX: the dynamo exporter failed ({type(e).__name__}: {reason}); "
                                           "wrote the file with the legacy exporter"), stacklevel=2)
            exporter = "legacy"
    if model is None:
        model = onnx.load_from_string(_legacy_bytes(baked, half))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(file_metadata(baked, half, exporter=exporter))
    model.producer_name = "metaanchor"
    return model.SerializeToString()


def _dynamo_model(baked, half: bool, program=None):
    """The ONNX ``ModelProto`` from ``torch.onnx.export(dynamo=True)`` of the exported program."""
    from metaanchor.deploy.pt2_export import export_program

    program = program if program is not None else export_program(baked, half)
    with torch.no_grad():
        onnx_program = torch.onnx.export(program, dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
                                         output_names=list(OUTPUT_NAMES), verbose=False)
    return _name_dims(onnx_program.model_proto)


def _name_dims(model):
    """Rename the exporter's shape symbols (s0, s1, ...) after the input's dimensions, everywhere in
    ``model``: input [batch, 3, D*rows, D*cols] (D = size_divisible), outputs as expressions of them."""
    import re

    dims = model.graph.input[0].type.tensor_type.shape.dim
    names = {}
    for i, name in ((0, "batch"), (2, "rows"), (3, "cols")):
        symbols = re.findall(r"[A-Za-z_]\w*", dims[i].dim_param)
        if len(symbols) == 1:
            names[symbols[0]] = name
    if not names:
        return model
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    values = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: names[m.group(1)], dim.dim_param)
    return model


def _legacy_bytes(baked, half: bool) -> bytes:
    """The ONNX file from torch's TorchScript-based exporter, dynamic batch, height, width."""
    graph = ExportGraph(baked, half).eval()
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
    return buf.getvalue()


def export_onnx(baked, path: str | Path, exporter: str = "dynamo", half: bool = False, nms: bool = False) -> Path:
    """Write the ONNX model of a baked detector to ``path`` (atomically); returns the path. ``nms``: the
    detection graph of ``deploy.onnx_nms`` (image in, detections out) instead of the raw outputs."""
    if nms:
        from metaanchor.deploy.onnx_nms import onnx_nms_bytes

        data = onnx_nms_bytes(baked, half, OPSET)
        return write_atomic(path, lambda f: f.write(data))
    data = onnx_bytes(baked, exporter, half)
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
