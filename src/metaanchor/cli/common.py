"""What the command modules share: the one-line-error parser, model loading, argument checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from metaanchor.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def load_model(checkpoint: str, device: str):
    from metaanchor.engine.device import resolve_device
    from metaanchor.families import load_detector

    dev = resolve_device(device)
    return load_detector(checkpoint, map_location=dev).to(dev)


def check_anchors_and_batch(args) -> None:
    """Argument mistakes found before any model or data is loaded."""
    from metaanchor.geometry.anchors import AnchorSet

    if getattr(args, "batch_size", 1) < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.anchors is not None:
        AnchorSet.parse(args.anchors)


def output_folder(folder: str) -> Path:
    """``--out`` as an existing or new folder; a file in the way or an unwritable place is a UserError."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the folder: {e.strerror or e}") from None
    return out


def refuse_overwrite(option: str, outputs: list, inputs: list) -> None:
    """A UserError when an output file would replace one of the inputs (compared after resolving links and ..)."""
    given = {Path(i).resolve(): i for i in inputs if i is not None}
    for out in outputs:
        if Path(out).resolve() in given:
            raise UserError(f"{option} {out}: would overwrite the input {given[Path(out).resolve()]}; "
                            "write it elsewhere")
