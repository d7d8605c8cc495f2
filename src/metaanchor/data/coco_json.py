"""The COCO JSON file format: reading, writing and locating annotation files.

:func:`load_coco_json` parses an annotation file (errors name file, line and
column); :func:`read_coco` also validates it (see ``metaanchor.data.validate``);
:func:`write_coco` writes one atomically (``metaanchor.files.write_text``).
A COCO dataset folder is ``DIR/annotations.json`` + ``DIR/images/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from metaanchor.data.validate import validate_coco
from metaanchor.errors import DataError, UserError
from metaanchor.files import write_text
from metaanchor.readers import irregular_kind, limit, load_json, over_limit, read_text


def load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON file (a regular file, within the size, depth, number and category limits of
    ``metaanchor.readers``); ``DataError`` names the file (and line/column if malformed)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: annotation file not found")
    # NaN and Infinity are let through: Python tools write them into fields validation ignores or refuses
    text = read_text(path, str(path), "MAX_ANNOTATION_BYTES", DataError)
    data = load_json(text, str(path), DataError, allow_nan=True)
    categories = data.get("categories") if isinstance(data, dict) else None
    if isinstance(categories, list) and len(categories) > limit("MAX_CATEGORIES"):
        raise DataError(f"{path}: {len(categories)} categories, more than {limit('MAX_CATEGORIES')} "
                        f"{over_limit('MAX_CATEGORIES')}")
    return data


def read_coco(path: str | os.PathLike, skip_invalid: bool = False, fail_fast: bool = False,
              images_dir: str | os.PathLike | None = None, skipped: dict | None = None) -> dict:
    """Read and validate a COCO JSON file (or dataset folder's annotations.json).

    With ``images_dir`` file names are also resolved and must stay inside it;
    ``skipped`` (if given) receives the skip counts (see ``validate_coco``).
    """
    path = Path(path)
    ann_file = path / "annotations.json" if path.is_dir() else path
    data, counts, _ = validate_coco(load_coco_json(ann_file), ann_file, skip_invalid and not fail_fast,
                                    fail_fast, images_dir)
    if skipped is not None:
        skipped.update(counts)
    return data


def write_coco(coco_dict: dict, path: str | os.PathLike) -> Path:
    """Write ``coco_dict`` as JSON atomically; ``WriteError`` names ``path`` if that fails."""
    return write_text(path, json.dumps(coco_dict))


def resolve_coco_paths(path: str | os.PathLike,
                       images_dir: str | os.PathLike | None) -> tuple[Path, Path]:
    """(annotation file, images dir) from a dataset folder or a JSON + images dir."""
    path = Path(path)
    if path.is_dir():
        ann_file = path / "annotations.json"
        if not ann_file.is_file():
            raise DataError(f"{path}: not a COCO dataset folder (no annotations.json); VOC roots and data.yaml "
                            "datasets open with metaanchor.data.open_dataset")
        return ann_file, Path(images_dir) if images_dir is not None else path / "images"
    if not path.exists():
        raise DataError(f"{path}: no such dataset folder or annotation file")
    if (kind := irregular_kind(path)) is not None:
        raise DataError(f"{path}: is {kind}, not a dataset folder or annotation file")
    if images_dir is None:
        raise UserError(f"{path}: an annotation file needs an images directory (--images DIR)")
    return path, Path(images_dir)
