"""``classes.txt``: one class name per line, label ``k`` on line ``k + 1`` (VOC and YOLO folders)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from metaanchor.errors import DataError
from metaanchor.files import write_text
from metaanchor.readers import limit, over_limit, read_text


def read_class_names(path: Path) -> list[str]:
    """The non-empty lines of ``path`` (a regular UTF-8 file); ``DataError`` if it cannot be read, holds
    no names or more than ``MAX_CATEGORIES``."""
    names = [line.strip() for line in read_text(path, str(path), "MAX_LABEL_BYTES", DataError).splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataError(f"{path}: no class names")
    if len(names) > limit("MAX_CATEGORIES"):
        raise DataError(f"{path}: {len(names)} class names, more than {limit('MAX_CATEGORIES')} "
                        f"{over_limit('MAX_CATEGORIES')}")
    return names


def write_class_names(names: list[str], path: Path) -> None:
    """Write ``names`` to ``path`` atomically, one a line. A blank name, or one holding a control character
    or line separator (read back, it would split into two names or change), is a ``DataError`` naming it."""
    for n in names:
        if not n.strip() or any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in n):
            why = "is blank" if not n.strip() else "holds a control character"
            raise DataError(f"category name {n!r} cannot be written to {path}: it {why}")
    write_text(path, "".join(f"{n}\n" for n in names))
