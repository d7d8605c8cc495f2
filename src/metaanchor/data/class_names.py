"""``classes.txt``: one class name per line, label ``k`` on line ``k + 1`` (VOC and YOLO folders)."""

from __future__ import annotations

from pathlib import Path

from metaanchor.errors import DataError
from metaanchor.files import write_text


def read_class_names(path: Path) -> list[str]:
    """The non-empty lines of ``path``; ``DataError`` if it cannot be read or holds no names."""
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise DataError(f"{path}: cannot read class names: {exc}") from None
    names = [n for n in names if n]
    if not names:
        raise DataError(f"{path}: no class names")
    return names


def write_class_names(names: list[str], path: Path) -> None:
    """Write ``names`` to ``path`` atomically; a name that is blank or holds a newline is a ``DataError``."""
    bad = [n for n in names if not n.strip() or "\n" in n]
    if bad:
        raise DataError(f"category name {bad[0]!r} cannot be written to {path}")
    write_text(path, "".join(f"{n}\n" for n in names))
