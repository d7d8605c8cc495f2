"""What the command modules share: the one-line-error parser, model loading, argument checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metaanchor.errors import UserError

DEVICE_HELP = "where to run: auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help with each option's default appended, unless it has none or the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default in (None, False, argparse.SUPPRESS) or default == []
                or not action.option_strings):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})".lstrip()


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line and exits 2; called with no arguments at all, a command that
    needs some prints its help instead (exit 2), so ``metaanchor anchors`` shows what it takes."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self._given: list[str] | None = None

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        if self._given == [] and message.startswith("the following arguments are required"):
            self.print_help()
            self.exit(2)
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


ANCHOR_FILE_SUFFIXES = (".json", ".yaml", ".yml")  # what AnchorSet.parse reads as an anchor file


def anchor_files(*specs: str | None) -> list[str]:
    """The anchor SPECs that name anchor files: inputs no output may replace."""
    return [s for s in specs if s and s.strip().lower().endswith(ANCHOR_FILE_SUFFIXES)]


def check_anchor_file_out(option: str, path: str) -> None:
    """An anchor file to write must have a suffix ``--anchors`` reads back."""
    if not path.lower().endswith(ANCHOR_FILE_SUFFIXES):
        raise UserError(f"{option} {path}: an anchor file must end in {', '.join(ANCHOR_FILE_SUFFIXES)}, "
                        "or --anchors cannot read it back")


def output_folder(folder: str | Path, option: str = "--out") -> Path:
    """``--out`` as an existing or new folder; a file in the way or an unwritable place is a UserError."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {out}: cannot create the folder: {e.strerror or e}") from None
    return out


DATA_KEYS = ("data.train", "data.train_images", "data.val", "data.val_images")  # may lie inside a run folder


def run_inputs(config: str | None, cfg: dict) -> dict:
    """The files and folders a training run reads, by config key, for ``check_outputs`` against its run folder."""
    data, model, anchors = cfg["data"], cfg["model"], cfg["anchors"]
    weights = model.get("backbone_weights")
    return {"--config": config if config and Path(config).is_file() else None,  # else a shipped config's name
            **{key: data.get(key.removeprefix("data.")) for key in DATA_KEYS},
            "model.init_from": model.get("init_from"),
            "model.backbone_weights": weights if weights and Path(weights).exists() else None,  # or 'imagenet'
            "anchors.train": anchor_files(anchors.get("train")),
            "anchors.eval": anchor_files(*anchors.get("eval", []))}
