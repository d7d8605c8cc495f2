"""Import from torchvision's ``RetinaNet`` (``metaanchor import --from torchvision-retinanet``).

``--weights`` takes a state dict file or one of torchvision's weight names; both go through the same
conversion (``metaanchor.families.retinanet.from_torchvision``, which also serves ``model.init_from``):

    model = import_torchvision_retinanet(torch.load("retinanet.pth"))       # a file, v1 or v2 layout
    model = import_torchvision_weights("retinanet_resnet50_fpn_v2")          # torchvision's COCO weights
    model = import_torchvision_weights("RetinaNet_ResNet50_FPN_Weights.COCO_V1")

The name is looked up in torchvision's registry and read from its cache (``torch.hub.get_dir()``), or
downloaded there with its progress bar and hash check; offline and not cached, a one-line error names
the file, the cache folder and the URL. The model detects like torchvision's on the same images (its
transform, anchor strides, post-processing and BatchNorm epsilon are carried over) and takes any other
anchor set; the COCO names and category ids come along.
"""

from __future__ import annotations

from pathlib import Path

from metaanchor.deploy.torchvision_layout import read_state_dict
from metaanchor.families.retinanet import RetinaNetDetector
from metaanchor.families.retinanet.from_torchvision import (
    LAYOUTS,
    import_named,
    import_torchvision_retinanet,
    layout_of,
    torchvision_anchor_set,
)
from metaanchor.modeling.pretrained import detector_weights_name

__all__ = ["import_torchvision_retinanet", "import_torchvision_weights", "torchvision_anchor_set", "LAYOUTS",
           "layout_of"]


def import_torchvision_weights(weights: str | Path, option: str = "--weights", **kwargs) -> RetinaNetDetector:
    """A MetaAnchor model from ``weights``: one of torchvision's weight names (``modeling.pretrained``), else a
    state dict file. ``kwargs`` as ``import_torchvision_retinanet``'s (e.g. ``hidden_dim``, ``bn_eps``)."""
    if detector_weights_name(str(weights)) is not None and not Path(weights).is_file():
        return import_named(str(weights), option, **kwargs)
    state = read_state_dict(weights, option)
    return import_torchvision_retinanet(state, where=f"{option} {weights}", **kwargs)
