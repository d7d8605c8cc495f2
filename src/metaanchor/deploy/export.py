"""Writing a baked model in a deployment format, and checking the written file against PyTorch.

Formats: ``onnx`` (``onnx_export``; ``nms=True``: ``onnx_nms``), ``pt2`` (``torch.export``,
``pt2_export``), ``torchscript`` (``torchscript_export``; torch deprecates it, pt2 replaces it) and
``torchvision`` (a torchvision RetinaNet state dict, ``torchvision_export``). ``half`` (float16)
applies to onnx and pt2, ``nms`` to onnx, ``onnx_exporter`` to onnx without ``nms``.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from metaanchor.errors import UserError

FORMATS = ("onnx", "pt2", "torchvision", "torchscript")
HALF_FORMATS = ("onnx", "pt2")
ONNX_EXPORTERS = ("dynamo", "legacy")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown; choose one of {', '.join(FORMATS)}")


def check_options(fmt: str, nms: bool = False, half: bool = False, onnx_exporter: str | None = None) -> None:
    """Refuse a format with an option it does not take (a UserError naming both)."""
    check_format(fmt)
    if nms and fmt != "onnx":
        raise UserError(f"--nms: decoding and NMS go into ONNX graphs only (--format onnx), not --format {fmt}")
    if half and fmt not in HALF_FORMATS:
        raise UserError(f"--half: float16 export is for --format {' or '.join(HALF_FORMATS)}, not --format {fmt}")
    if onnx_exporter is not None:
        if onnx_exporter not in ONNX_EXPORTERS:
            raise UserError(f"--onnx-exporter {onnx_exporter}: unknown; choose one of {', '.join(ONNX_EXPORTERS)}")
        if fmt != "onnx":
            raise UserError(f"--onnx-exporter: only for --format onnx, not --format {fmt}")
        if nms and onnx_exporter != "legacy":
            raise UserError(f"--onnx-exporter {onnx_exporter}: --nms graphs are written by the legacy exporter "
                            "(their data-dependent sizes); leave --onnx-exporter out")


def export(baked, fmt: str, output: str | Path, nms: bool = False, half: bool = False,
           onnx_exporter: str | None = None) -> Path:
    """Write ``baked`` (``model.bake(anchors)``) as ``fmt`` to ``output``; returns the path written."""
    check_options(fmt, nms, half, onnx_exporter)
    if fmt == "onnx":
        from metaanchor.deploy.onnx_export import export_onnx

        return export_onnx(baked, output, exporter=onnx_exporter or "dynamo", half=half, nms=nms)
    if fmt == "pt2":
        from metaanchor.deploy.pt2_export import export_pt2

        return export_pt2(baked, output, half=half)
    if fmt == "torchscript":
        from metaanchor.deploy.torchscript_export import export_torchscript

        return export_torchscript(baked, output)
    from metaanchor.deploy.torchvision_export import export_torchvision

    return export_torchvision(baked, output)


def verify_export(baked, fmt: str, path: str | Path, images: list[Tensor], nms: bool = False,
                  half: bool = False) -> dict:
    """Run the exported file and ``baked`` on ``images`` ([3, H, W] in [0, 1]): {"max_abs_diff", "match", ...}."""
    check_options(fmt, nms, half)
    if fmt == "torchvision":
        from metaanchor.deploy.torchvision_export import verify_torchvision

        return verify_torchvision(baked, path, images)
    from metaanchor.deploy.verify import verify, verify_nms

    if nms:
        return verify_nms(baked, path, images, half)
    if fmt == "onnx":
        from metaanchor.deploy.onnx_export import onnx_runner as runner
    elif fmt == "pt2":
        from metaanchor.deploy.pt2_export import pt2_runner as runner
    else:
        from metaanchor.deploy.torchscript_export import torchscript_runner as runner
    return verify(baked, runner(path)[0], images, half)
