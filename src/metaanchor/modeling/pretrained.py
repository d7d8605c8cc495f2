"""Weights from torchvision's registry, by name, fetched only when a user asks for them.

One helper (``fetch_weights``) reads a torchvision ``Weights`` entry from torchvision's cache
(``torch.hub.get_dir()/checkpoints``) or downloads it there with torchvision's progress bar and hash
check; offline and not cached it is a one-line ``UserError`` naming the file, the cache folder and the
URL. ``model.backbone_weights=imagenet`` and the COCO detectors (``metaanchor import --weights NAME``,
``model.init_from=torchvision:NAME``) both go through it. Nothing here runs at import time.

The COCO detectors have short names (``DETECTORS``) beside torchvision's own spellings:

    retinanet_resnet50_fpn      = RetinaNet_ResNet50_FPN_Weights.COCO_V1      (alias retinanet_v1)
    retinanet_resnet50_fpn_v2   = RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1   (alias retinanet_v2)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor

from metaanchor.checkpoint import load_tensor_file
from metaanchor.errors import UserError

TORCHVISION_PREFIX = "torchvision:"  # model.init_from=torchvision:NAME
# short name -> (torchvision's weight enum entry, the layout of the model it belongs to)
DETECTORS = {
    "retinanet_resnet50_fpn": ("RetinaNet_ResNet50_FPN_Weights.COCO_V1", "v1"),
    "retinanet_resnet50_fpn_v2": ("RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1", "v2"),
}
ALIASES = {"retinanet_v1": "retinanet_resnet50_fpn", "retinanet_v2": "retinanet_resnet50_fpn_v2",
           "retinanet_resnet50_fpn_coco": "retinanet_resnet50_fpn",
           "retinanet_resnet50_fpn_v2_coco": "retinanet_resnet50_fpn_v2"}


def detector_weights_name(name: str) -> str | None:
    """The short name (a ``DETECTORS`` key) that ``name`` spells, or None when it names none of them.

    Accepts the short names, their aliases, torchvision's ``Enum.ENTRY`` spelling (``.DEFAULT`` too) and any
    of them after ``torchvision:``; case-insensitive, '-' for '_'."""
    key = name.strip().removeprefix(TORCHVISION_PREFIX).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in DETECTORS:
        return key
    for short, (enum, _) in DETECTORS.items():
        if key in (enum.lower(), enum.lower().replace(".coco_v1", ".default")):
            return short
    return None


def known_detector_names() -> str:
    """The weight names a user may give, for error messages."""
    return ", ".join(list(DETECTORS) + [enum for enum, _ in DETECTORS.values()])


def torchvision_weights(enum_entry: str):
    """torchvision's ``Weights`` for ``Enum.ENTRY`` (metadata only: nothing is read or downloaded)."""
    from torchvision.models import get_weight

    return get_weight(enum_entry)


def cached_file(weights) -> Path:
    """Where torchvision keeps (or would keep) the file of ``weights``: ``torch.hub.get_dir()/checkpoints/FILE``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def fetch_weights(weights, option: str) -> tuple[dict[str, Tensor], str]:
    """The state dict of torchvision ``weights``: from torchvision's cache, else downloaded there (progress bar,
    hash check). ``option`` names the request in messages (e.g. ``model.backbone_weights=imagenet``).

    Offline (or any download error) and not cached: a one-line UserError naming the file, the cache folder
    and the URL. A cached file that cannot be read is a UserError saying to delete it.
    Returns the state dict and how error messages name it (``option (FILE)``)."""
    file = cached_file(weights)
    where = f"{option} ({file})"
    if file.is_file():  # read like any weights file: a damaged or planted file is a clear error
        return load_tensor_file(file, where, "unreadable, delete it to download it again"), where
    try:
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True), where
    except OSError as e:  # URLError (offline), HTTPError, disk errors
        reason = getattr(e, "reason", None) or e.strerror or e
        raise UserError(f"{option}: {file.name} is not in torchvision's cache {file.parent} and cannot be "
                        f"downloaded ({reason}); fetch {weights.url} elsewhere and put it in {file.parent}"
                        ) from None
    except RuntimeError as e:  # torch.hub's hash check
        raise UserError(f"{option}: the download of {weights.url} is damaged ({e}); run again to retry") from None


def detector_state_dict(name: str, option: str) -> tuple[dict[str, Tensor], str, str]:
    """A COCO detector's torchvision state dict by weight name (``detector_weights_name``), fetched as
    ``fetch_weights`` does. Returns (state dict, short name, how messages name it)."""
    short = detector_weights_name(name)
    if short is None:
        raise UserError(f"{option}: {name!r} is not a torchvision weight name this library imports; "
                        f"choose one of {known_detector_names()}")
    state, where = fetch_weights(torchvision_weights(DETECTORS[short][0]), option)
    return state, short, where
