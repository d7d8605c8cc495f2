"""TorchScript export of a baked detector: the raw-outputs graph of ``deploy.graph``, traced.

    path = export_torchscript(model.bake("5x5"), "model.pt")
    m = torch.jit.load("model.pt")        # needs torch only, not metaanchor
    cls_logits, box_deltas, anchors, level_sizes = m(batch)

``torch.jit.trace`` records the shape arithmetic (anchors, level sizes), so the module runs at
any batch size and input size (multiples of the largest stride, as ``preprocess`` pads).
Post-processing is ``deploy.numpy_postprocess`` as for ONNX; its settings are stored in the
archive as the extra file ``metaanchor.json``:

    extra = {"metaanchor.json": ""}
    m = torch.jit.load("model.pt", _extra_files=extra); meta = json.loads(extra["metaanchor.json"])

torch deprecates TorchScript (``torch.jit.trace``, ``save`` and ``load`` warn so); ``torch.export``
(``--format pt2``, ``deploy.pt2_export``) is its replacement. This format stays while torch ships
it: exporting warns once with ``TorchScriptDeprecated`` (one line in the CLI), and torch's own
deprecation warnings from the calls here are caught, only around those calls.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from metaanchor.deploy.graph import METADATA_KEY, ExportGraph, file_metadata
from metaanchor.deploy.onnx_export import EXAMPLE_SIZE
from metaanchor.files import write_atomic

EXTRA_FILE = f"{METADATA_KEY}.json"
TORCH_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"  # torch's FutureWarning from trace, save and load


class TorchScriptDeprecated(FutureWarning):
    """torch deprecates TorchScript; ``--format pt2`` (torch.export) replaces it."""


def torchscript_bytes(baked) -> bytes:
    """The serialised TorchScript archive (traced raw-outputs graph + metadata) of a baked detector."""
    graph = ExportGraph(baked).eval()
    warnings.warn(TorchScriptDeprecated("torch deprecates TorchScript (torch.jit); --format pt2 (torch.export) "
                                        "is its replacement"), stacklevel=2)
    side = max(EXAMPLE_SIZE, baked.batcher.size_divisible)
    example = torch.zeros(1, 3, side, side, device=next(baked.parameters()).device)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # shape arithmetic, which is traced
        warnings.filterwarnings("ignore", message=TORCH_DEPRECATION, category=FutureWarning)
        traced = torch.jit.trace(graph, (example,), check_trace=False)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCH_DEPRECATION, category=FutureWarning)
        torch.jit.save(traced, buf, _extra_files={EXTRA_FILE: json.dumps(file_metadata(baked))})
    return buf.getvalue()


def export_torchscript(baked, path: str | Path) -> Path:
    """Write the TorchScript archive of a baked detector to ``path`` (atomically); returns the path."""
    data = torchscript_bytes(baked)
    return write_atomic(path, lambda f: f.write(data))


def torchscript_runner(path: str | Path):
    """(run, meta): ``run(batch [B, 3, H, W] float32 numpy)`` -> the four outputs as numpy arrays (CPU)."""
    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCH_DEPRECATION, category=FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)

    def run(batch):
        with torch.no_grad():
            return [o.numpy() for o in module(torch.from_numpy(batch))]
    return run, json.loads(extra[EXTRA_FILE])
