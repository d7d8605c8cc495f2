"""Checkpoint files: atomic writes, validated reads.

A checkpoint is a dict saved with ``torch.save``:
    {"format": "metaanchor", "version": "0.1.0", "model_config": {...},
     "model": state_dict, ...training state (optimizer, iteration, RNG) when written by training}
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from metaanchor.errors import CheckpointError

FORMAT = "metaanchor"
COMPATIBLE_MAJOR = 0


def model_payload(model_config: dict, state_dict: dict) -> dict:
    from metaanchor import __version__

    return {"format": FORMAT, "version": __version__, "model_config": model_config, "model": state_dict}


def save(payload: dict, path: str | Path) -> None:
    """Write atomically: a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path, map_location="cpu") -> dict:
    """Read and validate a checkpoint; user-facing problems raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - truncated/corrupt files raise many types
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path}: unreadable (truncated or not a checkpoint): {msg}") from None
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
