"""Writing output files atomically, with one-line errors naming the file.

Every file the package writes (checkpoints, configs, metrics, detections, drawings,
reports) goes through :func:`write_atomic`: a temp file in the same folder, fsync,
then a rename, so a crash or a full disk never leaves a partial file.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from metaanchor.errors import UserError


class WriteError(UserError):
    """An output file could not be written (read-only folder, disk full, ...); the message names it."""


def write_error(path, e: OSError) -> WriteError:
    """One line naming ``path`` and the cause of ``e`` (e.g. 'No space left on device')."""
    cause = e.strerror or (errno.errorcode.get(e.errno, "") if e.errno else "") or str(e) or type(e).__name__
    return WriteError(f"cannot write {path}: {cause}")


@contextmanager
def writing(path):
    """Turn an OSError (read-only folder, disk full, ...) in the block into a one-line WriteError naming ``path``."""
    try:
        yield
    except OSError as e:
        raise write_error(path, e) from None


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc), else set and restore."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` through ``write(binary file)``: a temp file in the same folder, fsync, then a rename.

    The file gets the permissions of any file the user creates (0666 less the umask), not
    mkstemp's 0600. An OSError (read-only folder, disk full, a file in the way) raises
    ``WriteError`` naming ``path`` and leaves no temp file; other exceptions pass through, also
    leaving nothing behind.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        return path
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda f: f.write(text.encode()))
