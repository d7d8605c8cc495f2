"""Checkpoint files: atomic writes, validated reads, no code.

A checkpoint is a dict saved with ``torch.save``:
    {"format": "metaanchor", "version": "0.1.0", "model_config": {...},
     "model": state_dict, ...training state (optimizer, scaler, iteration) when written by training}

It holds only tensors and plain values (dict, list, tuple, str, int, float, bool, None) and is read
with ``torch.load(weights_only=True)``: a file someone hands you cannot run code when loaded
(a pickle naming any other global is refused with a ``CheckpointError``). Before that, the zip's
directory is checked: ``torch.save`` stores records uncompressed, so a record that would inflate far
beyond the file (a decompression bomb), or records beyond ``MAX_CHECKPOINT_BYTES`` in all, are refused
before anything is read.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from metaanchor.errors import ANSI_ESCAPE, CheckpointError, UserError, first_line
from metaanchor.files import WriteError, write_atomic, write_error
from metaanchor.readers import env_int
from metaanchor.version import __version__

FORMAT = "metaanchor"
COMPATIBLE_MAJOR = 0
MAX_NAMED_KEYS = 4  # keys named in a mismatch message; the rest are counted
# model settings that change the shapes of its tensors, named when a checkpoint's weights do not fit
SHAPE_SETTINGS = ("arch", "backbone", "fpn_channels", "head", "head_convs", "head_norm", "hidden_dim", "num_classes")
BN_COUNTER = re.compile(r".*\.num_batches_tracked$")  # BatchNorm's step counter: frozen BN has none
# Zip records uncompressed: torch.save stores them as they are (about the file's size in all), so more than
# this many times the file, plus a little for tiny files, can only be a compressed bomb.
MAX_INFLATION = 4
INFLATION_SLACK = 1 << 20
MAX_CHECKPOINT_BYTES = 64 << 30  # all records, uncompressed; METAANCHOR_MAX_CHECKPOINT_BYTES overrides it


def model_payload(model_config: dict, state_dict: dict) -> dict:
    return {"format": FORMAT, "version": __version__, "model_config": model_config, "model": state_dict}


def plain(obj, where: str = "checkpoint"):
    """``obj`` as tensors and plain values only (what ``torch.load(weights_only=True)`` accepts):
    dicts (an OrderedDict state dict too) become plain dicts, numpy scalars/arrays Python numbers/tensors,
    paths strings; anything else is a bug in the caller (TypeError naming where it is)."""
    if obj is None:
        return None
    for base in (bool, int, float, str):  # subclasses (IntEnum, numpy.float64, ...) to the base type
        if isinstance(obj, base):
            return base(obj)
    if torch.is_tensor(obj):
        return obj.detach()
    if isinstance(obj, dict):
        return {plain(k, where): plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, Path):
        return str(obj)
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be stored in a "
                    "tensors-only checkpoint")


def save(payload: dict, path: str | Path) -> None:
    """Write atomically: a temp file in the same folder, fsync, then rename over ``path``.

    Only tensors and plain values are stored (see ``plain``); the file gets the permissions
    of any file the user creates (0666 less the umask), not mkstemp's 0600. An OSError
    (read-only folder, disk full) raises ``WriteError`` naming ``path``, and leaves no temp file.
    """
    payload = plain(payload)
    write_atomic(path, lambda f: save_into(payload, f, path))


def save_into(obj, f, path) -> None:
    """``torch.save(obj, f)``, whose failed writes (disk full) surface as a RuntimeError from its zip writer
    (``PytorchStreamWriter failed writing file ...``, ``unexpected pos``): a ``WriteError`` naming ``path``
    (``write_atomic`` then removes the temp file)."""
    try:
        torch.save(obj, f)
    except RuntimeError as e:
        if "PytorchStreamWriter" not in str(e) and "inline_container" not in str(e):
            raise
        if isinstance(e.__context__, OSError):
            raise write_error(path, e.__context__) from None
        raise WriteError(f"cannot write {path}: write failed (disk full?)") from None


def _torch_load(path: Path, map_location, where: str, error: type[UserError], unreadable: str, refused: str):
    """``torch.load(weights_only=True)`` of ``path`` with every failure one line raising ``error``:
    ``{where}: file not found``, ``{where}: refused, <why>`` (a decompression bomb, or ``refused`` and the
    pickle global loading could run) or ``{where}: {unreadable}: <cause>``."""
    if not path.is_file():
        raise error(f"{where}: file not found")
    inflated = _inflation(path)
    if inflated:
        raise error(f"{where}: refused, {inflated}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        forbidden = _forbidden(e)
        if forbidden is not None:  # weights_only refused a global: loading it could run code
            raise error(f"{where}: refused, {refused} ({forbidden})") from None
        raise error(f"{where}: {unreadable}: {_unpickler_detail(e)}") from None  # not a pickle at all
    except Exception as e:  # noqa: BLE001 - truncated/corrupt files raise many types
        raise error(f"{where}: {unreadable}: {first_line(e)[:300]}") from None


def load(path: str | Path, map_location="cpu") -> dict:
    """Read and validate a checkpoint; user-facing problems raise CheckpointError."""
    path = Path(path)
    payload = _torch_load(path, map_location, f"checkpoint {path}", CheckpointError,
                          "unreadable (truncated or not a checkpoint)", "not a tensors-only metaanchor checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a metaanchor checkpoint ({_describe(payload)}; "
                              f"no 'format: {FORMAT}' entry)")
    version = str(payload.get("version", ""))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) != COMPATIBLE_MAJOR:
        raise CheckpointError(f"checkpoint {path}: written by metaanchor {version or '?'}, "
                              f"this is {COMPATIBLE_MAJOR}.x; incompatible version")
    for key in ("model_config", "model"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"checkpoint {path}: missing or malformed entry {key!r}")
    return payload


def max_checkpoint_bytes() -> int:
    """The cap on a checkpoint's records, uncompressed: ``METAANCHOR_MAX_CHECKPOINT_BYTES`` if set."""
    return env_int("METAANCHOR_MAX_CHECKPOINT_BYTES", MAX_CHECKPOINT_BYTES)


def _inflation(path: Path) -> str | None:
    """What is wrong with the sizes in a zip checkpoint's directory (None: fine, or not a zip: the legacy
    format holds its tensors as they are), read without inflating any record."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            records = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # torch.load reports the damage
    size = path.stat().st_size
    total, cap = sum(r.file_size for r in records), max_checkpoint_bytes()
    biggest = max(records, key=lambda r: r.file_size, default=None)
    if biggest is not None and total > MAX_INFLATION * size + INFLATION_SLACK:
        return (f"its records inflate to {total} bytes from a {size}-byte file ({biggest.filename}: "
                f"{biggest.file_size} bytes), more than torch.save writes: a decompression bomb")
    if total > cap:
        return (f"its records hold {total} bytes, above the {cap}-byte limit; raise it with the environment "
                f"variable METAANCHOR_MAX_CHECKPOINT_BYTES=N")
    return None


def _forbidden(e: Exception) -> str | None:
    """The global a weights-only load refused, from torch's long multi-paragraph message (None: no global)."""
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e)) or re.search(r"GLOBAL ([\w.]+)", str(e))
    return f"its pickle names the global {m.group(1)}, which loading could run" if m else None


def _unpickler_detail(e: Exception) -> str:
    """The one informative line of torch's weights-only error (e.g. 'Unsupported operand 110')."""
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
    detail = ANSI_ESCAPE.sub("", m.group(1)).strip() if m else first_line(e)
    return detail[:200]


def _describe(payload) -> str:
    """What a foreign checkpoint looks like, for the error message."""
    if isinstance(payload, dict) and payload and all(torch.is_tensor(v) for v in payload.values()):
        return f"a bare state dict of {len(payload)} tensors, e.g. from torchvision"
    if isinstance(payload, dict):
        keys = ", ".join(repr(k) for k in list(payload)[:5])
        return f"a dict with keys {keys}" if keys else "an empty dict"
    return f"a {type(payload).__name__}"


def remove_stale_temp_files(folder: str | Path, name: str) -> list[Path]:
    """Remove temp files a killed ``save`` of ``folder/name`` left behind; returns them."""
    stale = sorted(Path(folder).glob(f".{name}.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load_state(model: nn.Module, state: dict, path) -> None:
    """Load weights, turning a shape/key mismatch into a CheckpointError naming the tensor."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, KeyError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        detail = lines[1] if len(lines) > 1 else lines[0]
        if len(detail) > 200:
            detail = detail[:200] + "..."
        raise CheckpointError(f"checkpoint {path}: weights do not fit the model: {detail}") from None


def load_tensor_file(path: str | Path, where: str, unreadable: str = "cannot read"):
    """A weights file a user names (not our checkpoint format), read with ``torch.load(weights_only=True)``
    so it cannot run code. Missing, unreadable or refused (a decompression bomb, a pickle naming a global):
    a one-line UserError, ``{where}: file not found`` or ``{where}: {unreadable}: <cause>``."""
    return _torch_load(Path(path), "cpu", where, UserError, unreadable, "not a tensors-only file")


def key_names(keys) -> str:
    """Up to ``MAX_NAMED_KEYS`` keys (in the order given: a state dict's is the modules'), then how many more."""
    keys = list(keys)
    more = f" (+{len(keys) - MAX_NAMED_KEYS} more)" if len(keys) > MAX_NAMED_KEYS else ""
    return ", ".join(keys[:MAX_NAMED_KEYS]) + more


def state_dict_problems(expected: dict, given: dict, reference: str = "model", check_shapes: bool = True) -> list[str]:
    """What keeps the tensors ``given`` from loading where ``expected`` are wanted, one phrase per kind:
    'missing keys ...', 'unexpected keys ...', 'mismatched shapes KEY (given shape) (REFERENCE shape)'.
    BatchNorm's ``num_batches_tracked`` may be absent or extra. Empty when the state dict fits."""
    missing = [k for k in expected if k not in given and not BN_COUNTER.match(k)]
    unexpected = [k for k in given if k not in expected and not BN_COUNTER.match(k)]
    shapes = [f"{k} {tuple(v.shape)} ({reference} {tuple(expected[k].shape)})" for k, v in given.items()
              if check_shapes and k in expected and v.shape != expected[k].shape]
    return [f"{what} {key_names(keys)}" for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                                          ("mismatched shapes", shapes)) if keys]


def init_weights(model: nn.Module, path: str | Path) -> list[str]:
    """``model.init_from``: copy a checkpoint's weights into a newly built model (fine-tuning).

    Every tensor must fit: missing, unexpected or mis-shaped keys raise a CheckpointError naming them and
    the model settings of the checkpoint that differ (BatchNorm's num_batches_tracked may differ: frozen BN).
    One exception, as detectron2 and mmdetection do for a new class count: when the checkpoint has another
    ``num_classes`` (e.g. a COCO import fine-tuned on 3 classes), the tensors whose shape depends on it keep
    their fresh initialisation. Returns the keys so left out (empty when every tensor was copied)."""
    payload = load(path)
    state, own = payload["model"], model.state_dict()
    cfg, mine = payload["model_config"], getattr(model, "config", {})
    new_classes = "num_classes" in cfg and "num_classes" in mine and cfg["num_classes"] != mine["num_classes"]
    mismatched = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    problems = state_dict_problems(own, state, check_shapes=not new_classes)
    if problems:
        differ = [f"model.{k}={cfg[k]}" for k in SHAPE_SETTINGS if k in cfg and k in mine and cfg[k] != mine[k]]
        hint = f"; the checkpoint has {', '.join(differ)}" if differ else ""
        raise CheckpointError(f"model.init_from={path}: weights do not fit the model: {'; '.join(problems)}{hint}")
    state = {k: v for k, v in state.items() if k not in mismatched}
    model.load_state_dict({k: v for k, v in state.items() if not BN_COUNTER.match(k) or k in own}, strict=False)
    return mismatched
