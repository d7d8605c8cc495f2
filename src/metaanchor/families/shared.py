"""What every detector family shares with ``Detector``, until it moves into a common base class.

``Detector`` (RetinaNet) holds family-agnostic methods: anchor swapping,
grid-anchor caching, ``predict``, the eval-mode context, inference
conversion and checkpoints. Another family subclasses ``SharedDetectorMethods``
and gets *the same functions*, borrowed from ``Detector`` (not copies), as long
as it has the attributes they read:

    config, num_classes, class_names, category_ids, head (with ``set_anchors(codes)``),
    backbone, strides, standard_sizes, anchors, train_anchors, score_thresh,
    _grid_cache (an OrderedDict), _channels_last, _bn_folded

and a class attribute ``arch`` (its registry name, stored in ``config``).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from metaanchor.detector import Detector, _xyxy_scale
from metaanchor.errors import UserError


class SharedDetectorMethods(nn.Module):
    """Mixin: ``Detector``'s family-agnostic methods, the same function objects."""

    arch = "?"  # registry name, set by each family

    set_anchors = Detector.set_anchors
    grid = Detector.grid
    predict = Detector.predict
    evaluating = Detector.evaluating
    optimize_for_inference = Detector.optimize_for_inference
    set_channels_last = Detector.set_channels_last
    checkpoint_payload = Detector.checkpoint_payload
    save = Detector.save
    from_config = classmethod(Detector.from_config.__func__)
    from_checkpoint = classmethod(Detector.from_checkpoint.__func__)
    from_payload = classmethod(Detector.from_payload.__func__)

    def train(self, mode: bool = True):
        # Detector.train calls zero-argument super(), which only works on Detector instances
        if mode and self._bn_folded:
            raise RuntimeError(f"this {type(self).__name__} had its BatchNorm folded by optimize_for_inference() "
                               "and is eval-only; train a model built from the checkpoint instead")
        return nn.Module.train(self, mode)

    def _init_shared_state(self) -> None:
        self._grid_cache: OrderedDict = OrderedDict()
        self._channels_last, self._bn_folded = False, False


def check_class_args(num_classes: int, class_names: list[str] | None,
                     category_ids: list[int] | None) -> list[int] | None:
    """Validate class names and dataset category ids against ``num_classes``; returns the ids as a list."""
    if class_names is not None and len(class_names) != num_classes:
        raise UserError(f"{len(class_names)} class names given for num_classes={num_classes}")
    if category_ids is None:
        return None
    category_ids = list(category_ids)
    if (len(category_ids) != num_classes or len(set(category_ids)) != num_classes
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in category_ids)):
        raise UserError(f"category ids {category_ids}: need {num_classes} distinct integers (one per class)")
    return category_ids


def to_image_pixels(dets: list[dict[str, Tensor]], scales: list[tuple[float, float]],
                    images: list[Tensor]) -> list[dict[str, Tensor]]:
    """Map per-image detections from batch pixels back to each original image, clipped to it (in place)."""
    for d, s, img in zip(dets, scales, images):
        d["boxes"] = d["boxes"] / _xyxy_scale(s, d["boxes"].device)
        d["boxes"][:, 0::2].clamp_(0, img.shape[-1])
        d["boxes"][:, 1::2].clamp_(0, img.shape[-2])
    return dets
