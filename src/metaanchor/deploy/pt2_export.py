"""``torch.export`` of a baked detector: the raw-outputs graph of ``deploy.graph`` as a ``.pt2`` file.

    path = export_pt2(model.bake("5x5"), "model.pt2")
    extra = {"metaanchor.json": ""}
    program = torch.export.load("model.pt2", extra_files=extra)   # torch only, not metaanchor
    meta = json.loads(extra["metaanchor.json"])
    cls_logits, box_deltas, anchors, level_sizes = program.module()(batch)

The program takes the normalised, zero-padded batch [B, 3, H, W] float32 that
``numpy_postprocess.preprocess`` makes and returns the four raw outputs (``deploy.graph``); decode
and NMS are ``numpy_postprocess.postprocess``, whose settings are the metadata above. Batch, height
and width are dynamic (``torch.export.Dim``): H and W are any multiples of ``size_divisible``. The
level sizes are symbolic expressions of H and W, traced once. One limit: torch.export assumes
every level's output reshapes as a view, which holds when the level has more than one cell, so
the program's shape guard refuses batches whose coarsest level is 1 x 1 (RetinaNet: both padded
sides at most 128 px; pad larger, or use ONNX, which has no such guard). ``--half``: float16
weights and activations, float32 input and outputs (``ExportGraph(half=True)``). The program is
exported on the CPU; to run it on a GPU, move it first:
``torch.export.passes.move_to_device_pass(program, "cuda")``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch.export import Dim

from metaanchor.deploy.graph import INPUT_NAME, METADATA_KEY, ExportGraph, file_metadata
from metaanchor.errors import UserError
from metaanchor.files import write_atomic

EXTRA_FILE = f"{METADATA_KEY}.json"
EXAMPLE_CELLS = (4, 6)  # example batch (h, w) in multiples of size_divisible: coarsest level above 1 x 1
MAX_BATCH = 1024
MAX_SIDE = 8192  # px, the largest padded side the program accepts


def dynamic_shapes(divisor: int) -> dict:
    """``torch.export`` dynamic shapes of the input batch: any batch, sides multiples of ``divisor``."""
    rows = Dim("rows", min=1, max=MAX_SIDE // divisor)
    cols = Dim("cols", min=1, max=MAX_SIDE // divisor)
    return {INPUT_NAME: {0: Dim("batch", min=1, max=MAX_BATCH), 2: divisor * rows, 3: divisor * cols}}


def export_program(baked, half: bool = False) -> torch.export.ExportedProgram:
    """The ``ExportedProgram`` of ``ExportGraph(baked, half)``, dynamic in batch, height and width."""
    import torch.fx.experimental._config as fx_config

    graph = ExportGraph(baked, half).eval()
    d = baked.batcher.size_divisible
    example = torch.zeros(2, 3, EXAMPLE_CELLS[0] * d, EXAMPLE_CELLS[1] * d, device=next(baked.parameters()).device)
    # size-oblivious: no guard on a size being 1 where the graph computes the same at every size
    with torch.no_grad(), fx_config.patch(backed_size_oblivious=True):
        return torch.export.export(graph, (example,), dynamic_shapes=dynamic_shapes(d), strict=False)


def pt2_bytes(baked, half: bool = False, program: torch.export.ExportedProgram | None = None) -> bytes:
    """The serialised ``.pt2`` archive (exported raw-outputs graph + metadata) of a baked detector.
    ``program``: its ``export_program(baked, half)`` when already made."""
    buf = io.BytesIO()
    torch.export.save(program if program is not None else export_program(baked, half), buf,
                      extra_files={EXTRA_FILE: json.dumps(file_metadata(baked, half))})
    return buf.getvalue()


def export_pt2(baked, path: str | Path, half: bool = False) -> Path:
    """Write the ``.pt2`` archive of a baked detector to ``path`` (atomically); returns the path."""
    data = pt2_bytes(baked, half)
    return write_atomic(path, lambda f: f.write(data))


def pt2_runner(path: str | Path):
    """(run, meta): ``run(batch [B, 3, H, W] float32 numpy)`` -> the four outputs as numpy arrays (CPU);
    a batch the program's shape guard refuses is a UserError naming the file and the shape."""
    extra = {EXTRA_FILE: ""}
    with open(path, "rb") as f:  # a file object: torch.export.load wants a path ending in .pt2
        module = torch.export.load(f, extra_files=extra).module()

    def run(batch):
        try:
            with torch.no_grad():
                return [o.numpy() for o in module(torch.from_numpy(batch))]
        except AssertionError as e:
            if not str(e).startswith("Guard failed"):
                raise
            raise UserError(f"{path}: the exported program refuses a batch of shape {list(batch.shape)} ({e}); "
                            "its coarsest level must have more than one cell: pad the batch larger") from None
    return run, json.loads(extra[EXTRA_FILE])
