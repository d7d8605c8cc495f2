"""Import from torchvision's ``RetinaNet``.

Import (``metaanchor import --from torchvision-retinanet``) turns a RetinaNet-ResNet-FPN state dict
(``retinanet_resnet50_fpn`` v1 layout) into a MetaAnchor model: backbone, FPN and towers are copied,
and each generator is solved so that torchvision's anchors get exactly the original last-conv slices
(``AnchorFunctionGenerator.fit_exact``). It detects like the original with those anchors and takes any
other anchor set.

Same detections need the same input: torchvision computes each level's stride as padded batch size //
feature size, equal to ours (8 .. 128) only when the padded batch is a multiple of 128 px (other sizes
shift its P6/P7 anchors), and it resizes to floor(side * scale) where we round; sizes whose scaled sides
are whole multiples of 128 match exactly. Our post-processing also skips anchors centred in the padding.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import _default_anchorgen

from metaanchor.checkpoint import BN_COUNTER, key_names, state_dict_problems
from metaanchor.deploy.torchvision_layout import (
    FPN_CHANNELS,
    RESNET_LAYOUTS,
    TORCHVISION_DEFAULTS,
    TOWER_CONVS,
    plain_state_dict,
    torchvision_key,
)
from metaanchor.errors import ConfigError, UserError
from metaanchor.families.retinanet import RetinaNetDetector
from metaanchor.geometry.anchors import AnchorSet
from metaanchor.schema import check, fields


def torchvision_anchor_set(generator: AnchorGenerator | None = None) -> AnchorSet:
    """torchvision's anchors (default: ``retinanet_resnet50_fpn``'s 3 scales x 3 ratios per level) as an
    AnchorSet: per-level pixel (h, w), since its rounding to whole pixels makes them differ slightly
    from level to level (P3's 1.5625 x 32 vs P7's 1.5859 x 512)."""
    generator = generator or _default_anchorgen()
    levels = []
    for cell in generator.cell_anchors:  # [K, 4] x1y1x2y2 centred at 0
        wh = cell[:, 2:] - cell[:, :2]
        levels.append([(float(h), float(w)) for w, h in wh.tolist()])
    return AnchorSet(per_level=levels, spec="torchvision-3x3")


def _resnet_of(state: dict[str, Tensor], where: str) -> str:
    layer3 = {k.split(".")[3] for k in state if k.startswith("backbone.body.layer3.")}
    layout = ("backbone.body.layer1.0.conv3.weight" in state, len(layer3))
    if layout not in RESNET_LAYOUTS:
        missing = [k for k in ("backbone.body.conv1.weight", "backbone.body.layer3.0.conv1.weight") if k not in state]
        raise UserError(f"{where}: not a torchvision RetinaNet with a ResNet-18/34/50/101 backbone "
                        + (f"(missing keys {key_names(missing)})" if missing
                           else f"(layer3 has {layout[1]} blocks, bottleneck={layout[0]})"))
    return RESNET_LAYOUTS[layout]


def _head_shape(state: dict[str, Tensor], where: str) -> tuple[int, int]:
    keys = ("head.classification_head.cls_logits.weight", "head.regression_head.bbox_reg.weight")
    missing = [k for k in keys if k not in state]
    if missing:
        raise UserError(f"{where}: not a torchvision RetinaNet state dict: missing keys {key_names(missing)}")
    k4 = state[keys[1]].shape[0]
    if k4 % 4:
        raise UserError(f"{where}: {keys[1]} has {k4} outputs, not 4 per anchor")
    k = k4 // 4
    if state[keys[0]].shape[0] % k:
        raise UserError(f"{where}: {keys[0]} has {state[keys[0]].shape[0]} outputs, not a multiple of {k} anchors")
    return state[keys[0]].shape[0] // k, k


def import_torchvision_retinanet(state_dict: dict[str, Tensor], hidden_dim: int = 64,
                                 anchors: AnchorSet | None = None, where: str = "state dict",
                                 **detector_kwargs) -> RetinaNetDetector:
    """A MetaAnchor RetinaNetDetector that reproduces a torchvision RetinaNet state dict.

    Args:
        state_dict: torchvision ``RetinaNet`` weights (ResNet-18/34/50/101-FPN, v1 head without norm).
        hidden_dim: generator width; at least the number of distinct anchor codes - 1 (27 - 1 for
            torchvision's default anchors over 5 levels).
        anchors: the anchors the weights were trained with (default: torchvision's, ``torchvision_anchor_set``).
        where: names the source in error messages. detector_kwargs: overrides of the detector's
            arguments (default: torchvision's transform and post-processing settings, frozen BatchNorm,
            labels = category ids 0..C-1, COCO names for 91 classes).
    Returns:
        the model (eval mode) with ``anchors`` as its anchor set; its generators give, for those anchors,
        the original last-conv weights (max residual of the solve in ``model.import_residual``).
    """
    _check_hidden_dim(hidden_dim)
    state = plain_state_dict(state_dict, where)
    backbone = _resnet_of(state, where)
    num_classes, k = _head_shape(state, where)
    anchors = anchors or torchvision_anchor_set()
    if anchors.num_anchors(5) != [k] * 5:
        raise UserError(f"{where}: the head has {k} anchors per position, the anchor set {anchors.spec} "
                        f"{anchors.num_anchors(5)}")
    kwargs = TORCHVISION_DEFAULTS | dict(num_classes=num_classes, backbone=backbone, fpn_channels=FPN_CHANNELS,
                                         head_convs=TOWER_CONVS, frozen_bn=True, anchors=anchors,
                                         category_ids=list(range(num_classes)), class_names=_class_names(num_classes))
    kwargs |= detector_kwargs
    with torch.random.fork_rng():  # the generator's W1 is drawn from a fixed seed: imports are reproducible
        torch.manual_seed(0)
        reference = RetinaNetDetector(head="predefined", **kwargs)
        model = RetinaNetDetector(head="metaanchor", hidden_dim=hidden_dim, **kwargs)
    _load_checked(reference, state, where)
    theirs = reference.state_dict()
    own = {k: v for k, v in theirs.items() if not k.startswith(("head.cls_logits.", "head.bbox_pred."))}
    model.load_state_dict(own, strict=False)  # all but the generators, which are solved next
    model.import_residual = _solve_generators(model, reference, anchors)
    return model.eval()


def _check_hidden_dim(hidden_dim: int) -> None:
    """The generator width within model.hidden_dim's range (its first layer is hidden_dim x anchors)."""
    try:
        check(RetinaNetDetector.Config, "hidden_dim", hidden_dim)
    except ConfigError:
        high = fields(RetinaNetDetector.Config)["hidden_dim"].metadata["high"]
        raise UserError(f"--hidden-dim {hidden_dim}: must be an integer in 1..{high} "
                        "(the range of model.hidden_dim)") from None


def _class_names(num_classes: int) -> list[str] | None:
    from torchvision.models.detection import RetinaNet_ResNet50_FPN_Weights

    coco = RetinaNet_ResNet50_FPN_Weights.COCO_V1.meta["categories"]  # 91 names, label = COCO category id
    return list(coco) if num_classes == len(coco) else None


def _load_checked(reference: RetinaNetDetector, state: dict[str, Tensor], where: str) -> None:
    """Load torchvision-keyed ``state`` into our predefined model; missing/unexpected/mis-shaped keys are a
    UserError naming them (BatchNorm's num_batches_tracked may be absent or extra: frozen BN ignores it)."""
    expected = {torchvision_key(k): v for k, v in reference.state_dict().items()}
    given = {k: v for k, v in state.items() if not BN_COUNTER.match(k)}
    problems = state_dict_problems(expected, given, reference="expected")
    if problems:
        raise UserError(f"{where}: does not fit a torchvision RetinaNet ({reference.config['backbone']}-FPN, "
                        f"{reference.num_classes} classes): {'; '.join(problems)}")
    reference.load_state_dict({k: given[torchvision_key(k)] for k in reference.state_dict()}, strict=True)


def _solve_generators(model: RetinaNetDetector, reference: RetinaNetDetector, anchors: AnchorSet) -> float:
    """Fit both generators so every code of ``anchors`` gets the reference's last-conv slice of its anchor.

    Anchor k has one code per level (nearly equal ones for torchvision's rounded anchors); W1 gets hinges at
    the ends of each anchor's code range (``set_hinges``), then theta* and W2 are solved exactly
    (``fit_exact``) over the distinct codes."""
    per_level = torch.stack(anchors.codes(model.standard_sizes))  # [L, K, 2]
    codes, slots = torch.unique(per_level.flatten(0, 1), dim=0, return_inverse=True)
    anchor_of = torch.arange(per_level.shape[1]).repeat(per_level.shape[0])  # [L*K] anchor index
    slot = torch.empty(len(codes), dtype=torch.long).scatter_(0, slots, anchor_of)
    if not torch.equal(slot[slots], anchor_of):
        raise UserError(f"anchor set {anchors.spec}: two different anchors have the same shape on some level")
    intervals = torch.stack([per_level.amin(0), per_level.amax(0)], 1)  # [K, 2, 2]
    hidden = model.head.cls_generator.fc1.out_features
    residual = 0.0
    for gen, conv in ((model.head.cls_generator, reference.head.cls_logits),
                      (model.head.reg_generator, reference.head.bbox_pred)):
        try:
            gen.set_hinges(intervals)
        except ValueError as e:
            raise UserError(f"--hidden-dim {hidden}: too small for anchor set {anchors.spec} ({e})") from None
        per = gen.out_channels
        w = conv.weight.detach().view(-1, per, *conv.weight.shape[1:])[slot].flatten(0, 1)
        b = conv.bias.detach().view(-1, per)[slot].flatten()
        res = gen.fit_exact(codes, w, b)
        if res > 1e-6 * max(1.0, float(w.abs().max()), float(b.abs().max())):
            raise UserError(f"--hidden-dim {hidden}: the generator cannot reproduce the {len(codes)} distinct codes "
                            f"of anchor set {anchors.spec} exactly (residual {res:.2g}); use a larger --hidden-dim")
        residual = max(residual, res)
    model.set_anchors(anchors)
    return residual
