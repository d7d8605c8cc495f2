"""Writing a baked model in a deployment format, and checking the written file against PyTorch."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from metaanchor.errors import UserError

FORMATS = ("onnx", "torchscript", "torchvision")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown; choose one of {', '.join(FORMATS)}")


def export(baked, fmt: str, output: str | Path) -> Path:
    """Write ``baked`` (``model.bake(anchors)``) as ``fmt`` to ``output``; returns the path written."""
    check_format(fmt)
    if fmt == "onnx":
        from metaanchor.deploy.onnx_export import export_onnx

        return export_onnx(baked, output)
    if fmt == "torchscript":
        from metaanchor.deploy.torchscript_export import export_torchscript

        return export_torchscript(baked, output)
    from metaanchor.deploy.torchvision_export import export_torchvision

    return export_torchvision(baked, output)


def verify_export(baked, fmt: str, path: str | Path, images: list[Tensor]) -> dict:
    """Run the exported file and ``baked`` on ``images`` ([3, H, W] in [0, 1]): {"max_abs_diff", "match", ...}."""
    check_format(fmt)
    if fmt == "torchvision":
        from metaanchor.deploy.torchvision_export import verify_torchvision

        return verify_torchvision(baked, path, images)
    from metaanchor.deploy.verify import verify

    if fmt == "onnx":
        from metaanchor.deploy.onnx_export import onnx_runner as runner
    else:
        from metaanchor.deploy.torchscript_export import torchscript_runner as runner
    return verify(baked, runner(path)[0], images)
