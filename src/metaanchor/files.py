"""Writing output files atomically, with one-line errors naming the file.

Every file the package writes (checkpoints, configs, metrics, detections, drawings,
reports) goes through :func:`write_atomic`: a temp file in the same folder, fsync,
then a rename, so a crash or a full disk never leaves a partial file.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping
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

    An existing ``path`` that is not a regular file (a device, FIFO, socket or folder; links
    followed) is refused with a ``WriteError``. The file gets the permissions of any file the user
    creates (0666 less the umask), not mkstemp's 0600. An OSError (read-only folder, disk full, a
    file in the way) raises ``WriteError`` naming ``path`` and leaves no temp file; other exceptions
    pass through, also leaving nothing behind.
    """
    path = Path(path)
    if _kind(path) not in (None, "file"):  # a device, FIFO or folder would be replaced by a regular file
        raise WriteError(f"cannot write {path}: exists and is not a regular file")
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


# --------------------------------------------------------------------------- output policy

PathArg = str | os.PathLike
Paths = PathArg | Iterable[PathArg] | None


class OutputClash(UserError):
    """An output would replace or write inside one of the command's inputs, or names something not writable."""


def _real(path: PathArg) -> Path:
    """``path`` with links and ``..`` resolved (as far as they resolve), so aliases compare equal."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # symlink loops
        return Path(os.path.abspath(path))


def _each(paths: Paths) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths if p is not None]


def _kind(path: Path) -> str | None:
    """'file', 'folder', 'other' (device, FIFO, socket) or None when ``path`` (links followed) does not exist."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return "file" if stat.S_ISREG(mode) else "folder" if stat.S_ISDIR(mode) else "other"


def check_outputs(outputs: Mapping[str, Paths], inputs: Mapping[str, Paths], folders: Collection[str] = (),
                  may_contain: Collection[str] = ()) -> None:
    """Refuse, before any work, outputs that would destroy an input or a special file; raise ``OutputClash``.

    ``outputs`` and ``inputs`` map an option name (``--json-out``, ``--data``) to a path or several.
    Paths are compared resolved, so ``..`` and symlinks do not get around the checks. An output file
    may not be an input, lie inside an input folder, or exist as anything but a regular file. An
    output named in ``folders`` is a folder the command writes into: it may not be, lie inside or
    contain an input (inputs named in ``may_contain`` may lie inside it), or exist as a non-folder.
    No two outputs may be the same file.
    """
    given = [(name, path, _real(path), _kind(path)) for name, paths in inputs.items() for path in _each(paths)]
    written: dict[Path, str] = {}
    for option, paths in outputs.items():
        folder = option in folders
        for out in _each(paths):
            where = f"{option} {out}"
            kind = _kind(out)
            if folder and kind not in (None, "folder"):
                raise OutputClash(f"{where}: exists and is not a folder")
            if not folder and kind not in (None, "file"):
                raise OutputClash(f"{where}: exists and is not a regular file")
            real = _real(out)
            if real in written and written[real] != where:
                raise OutputClash(f"{where}: is also {written[real]}; give each output its own name")
            written[real] = where
            for name, path, real_in, in_kind in given:
                what = f"the input {name} ({path})"
                if real == real_in:
                    raise OutputClash(f"{where}: would overwrite {what}")
                if in_kind == "folder" and real.is_relative_to(real_in):
                    raise OutputClash(f"{where}: is inside {what}")
                if folder and name not in may_contain and real_in.is_relative_to(real):
                    raise OutputClash(f"{where}: contains {what}")


def make_folder(path: PathArg, root: PathArg) -> Path:
    """Create the folder ``path`` at or below the output folder ``root``, following no symlink below ``root``.

    A symlink inside an output would send writes (and the removals that replace files) somewhere
    else, so one in the way is an ``OutputClash`` naming it, as is a file in the way; an OSError
    (read-only folder, disk full) is a ``WriteError``.
    """
    path, root = Path(path), Path(root)
    with writing(root):
        root.mkdir(parents=True, exist_ok=True)
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise OutputClash(f"{current}: is a symlink (to {os.readlink(current)}); folders inside an output are "
                              "created, never followed")
        kind = _kind(current)
        if kind not in (None, "folder"):
            raise OutputClash(f"{current}: exists and is not a folder")
        with writing(current):
            current.mkdir(exist_ok=True)
    return path


def fresh_folder(path: PathArg, exist_ok: bool = False) -> Path:
    """The folder a new run writes: ``path`` when it is missing, empty or ``exist_ok``; else the first free one of
    ``path2``, ``path3``, ... (``runs/train`` -> ``runs/train2``), so a run never mixes its files with another's.

    Nothing is created here; a file (not a folder) at ``path`` is left for the writer to refuse.
    """
    path = Path(path)
    if exist_ok or not path.is_dir() or not any(path.iterdir()):
        return path
    n = 2
    while (candidate := path.with_name(f"{path.name}{n}")).exists():
        n += 1
    return candidate
