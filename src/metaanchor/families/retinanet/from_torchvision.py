"""torchvision's RetinaNets (``retinanet_resnet50_fpn`` and its v2) as MetaAnchor RetinaNetDetectors.

A torchvision RetinaNet state dict becomes a model whose backbone, FPN and towers are copied and whose
generators are solved so that torchvision's anchors get exactly the original last-conv slices
(``AnchorFunctionGenerator.fit_exact``); it takes any other anchor set too. Every setting that changes
torchvision's numbers is carried over, so the model's detections are torchvision's ``model(images)``:

    layout  P6 from  head towers           BatchNorm eps          box loss
    v1      P5       conv + ReLU           frozen, eps 0          L1
    v2      C5       conv + GroupNorm(32)  plain, eps 1e-5        GIoU

and for both: normalise, then resize to 800 / 1333 with sides rounded down; anchors at torchvision's
per-batch strides (padded side // feature side), anchors in the padding kept; box coder weights
(1, 1, 1, 1), score 0.05, NMS 0.5, 1000 candidates per level, 300 detections, COCO's 91 labels
(= category ids) and names.

The same function takes a file's state dict and a downloaded one: the registry lookup
(``modeling.pretrained``) only fetches, ``import_torchvision_retinanet`` only converts.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import _default_anchorgen

from metaanchor.checkpoint import BN_COUNTER, key_names, state_dict_problems
from metaanchor.errors import ConfigError, UserError
from metaanchor.families.retinanet.detector import RetinaNetDetector
from metaanchor.geometry.anchors import AnchorSet
from metaanchor.modeling.pretrained import DETECTORS, detector_state_dict
from metaanchor.schema import check, fields

TOWER_CONVS = 4  # torchvision's RetinaNetHead has 4 convs per tower
FPN_CHANNELS = 256
# torchvision's RetinaNet transform, anchors and post-processing, for every imported model
TORCHVISION_DEFAULTS = dict(min_size=800, max_size=1333, detections_per_img=300, score_thresh=0.05,
                            nms_thresh=0.5, topk_candidates=1000, transform="torchvision", grid_strides="padded",
                            skip_padding_anchors=False)
# what differs between the two layouts: torchvision's v1 loads its COCO weights into FrozenBatchNorm2d with
# eps 0, its v2 into plain BatchNorm2d (eps 1e-5; eval mode uses the stored statistics, frozen_bn=True for
# fine-tuning changes nothing but float rounding)
LAYOUTS = {"v1": dict(head_norm="none", p6_input="p5", reg_loss="l1", bn_eps=0.0, frozen_bn=True),
           "v2": dict(head_norm="gn", p6_input="c5", reg_loss="giou", bn_eps=1e-5, frozen_bn=False)}
# (bottleneck blocks?, blocks in layer3) -> ResNet depth
RESNET_LAYOUTS = {(False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50", (True, 23): "resnet101"}
# our key prefix -> torchvision's (first match wins)
_PREFIXES = [("backbone.body.", "backbone."), ("head.cls_logits.", "head.classification_head.cls_logits."),
             ("head.bbox_pred.", "head.regression_head.bbox_reg.")]
_TOWERS = {"cls_tower": "classification_head", "reg_tower": "regression_head"}
_GN_KEY = "head.classification_head.conv.0.1.weight"


# ----------------------------------------------------------------------------- key mapping
def torchvision_key(key: str, head_norm: str = "none") -> str | None:
    """Our RetinaNetDetector state-dict key -> torchvision RetinaNet's (predefined-anchor head).

    Tower layer j of ours is torchvision's ``conv.{i}.{part}`` (part 0 the conv, 1 the GroupNorm). None for
    the conv biases of GroupNorm towers, which torchvision's towers do not have (they are zero on import)."""
    m = re.fullmatch(r"head\.(cls_tower|reg_tower)\.(\d+)\.(\w+)", key)
    if m:
        i, part = divmod(int(m[2]), 3 if head_norm == "gn" else 2)
        if head_norm == "gn" and part == 0 and m[3] == "bias":
            return None
        return f"head.{_TOWERS[m[1]]}.conv.{i}.{part}.{m[3]}"
    for ours, theirs in _PREFIXES:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    raise ValueError(f"no torchvision RetinaNet key for {key}")


def plain_state_dict(state, where: str) -> dict[str, Tensor]:
    """The mapping of names to tensors in ``state`` (also inside a training checkpoint's 'model' entry)."""
    if isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        state = state.get("model", state.get("state_dict", state))  # a training checkpoint around it
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and torch.is_tensor(v)
                                                           for k, v in state.items()):
        raise UserError(f"{where}: not a state dict (a mapping of parameter names to tensors)")
    return state


# ----------------------------------------------------------------------------- reading a state dict
def torchvision_anchor_set(generator: AnchorGenerator | None = None) -> AnchorSet:
    """torchvision's anchors (default: both RetinaNets' 3 scales x 3 ratios per level) as an AnchorSet:
    per-level pixel (h, w), since its rounding to whole pixels makes them differ slightly from level to
    level (P3's 1.5625 x 32 vs P7's 1.5859 x 512)."""
    generator = generator or _default_anchorgen()
    levels = []
    for cell in generator.cell_anchors:  # [K, 4] x1y1x2y2 centred at 0
        wh = cell[:, 2:] - cell[:, :2]
        levels.append([(float(h), float(w)) for w, h in wh.tolist()])
    return AnchorSet(per_level=levels, spec="torchvision-3x3")


def layout_of(state: dict[str, Tensor]) -> str:
    """``v2`` for a ``retinanet_resnet50_fpn_v2`` state dict (GroupNorm towers), else ``v1``."""
    return "v2" if _GN_KEY in state else "v1"


def _resnet_of(state: dict[str, Tensor], where: str) -> str:
    layer3 = {k.split(".")[3] for k in state if k.startswith("backbone.body.layer3.")}
    layout = ("backbone.body.layer1.0.conv3.weight" in state, len(layer3))
    if layout not in RESNET_LAYOUTS:
        missing = [k for k in ("backbone.body.conv1.weight", "backbone.body.layer3.0.conv1.weight") if k not in state]
        raise UserError(f"{where}: not a torchvision RetinaNet with a ResNet-18/34/50/101 backbone "
                        + (f"(missing keys {key_names(missing)})" if missing
                           else f"(layer3 has {layout[1]} blocks, bottleneck={layout[0]})"))
    return RESNET_LAYOUTS[layout]


def _p6_input(state: dict[str, Tensor], default: str) -> str:
    """``c5`` when torchvision's P6 conv reads more channels than the FPN has (v2: 2048), else ``p5``."""
    p6 = state.get("backbone.fpn.extra_blocks.p6.weight")
    return default if p6 is None or p6.dim() != 4 else ("c5" if p6.shape[1] != FPN_CHANNELS else "p5")


def _head_shape(state: dict[str, Tensor], where: str) -> tuple[int, int]:
    """(classes C, anchors K per position) from the last convs' output channels (K*C, K*4)."""
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


def coco_class_names(num_classes: int) -> list[str] | None:
    """torchvision's COCO names (91: label = COCO category id, "N/A" for unused ids), for a 91-class head."""
    from torchvision.models.detection import RetinaNet_ResNet50_FPN_Weights

    coco = RetinaNet_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    return list(coco) if num_classes == len(coco) else None


# ----------------------------------------------------------------------------- import
def import_torchvision_retinanet(state_dict: dict[str, Tensor], hidden_dim: int = 64,
                                 anchors: AnchorSet | None = None, where: str = "state dict",
                                 head: str = "metaanchor", width_option: str = "--hidden-dim",
                                 **detector_kwargs) -> RetinaNetDetector:
    """A RetinaNetDetector that reproduces a torchvision RetinaNet state dict (v1 or v2 layout).

    Args:
        state_dict: torchvision ``RetinaNet`` weights: a ResNet-18/34/50/101-FPN ``retinanet_resnet50_fpn``
            (conv + ReLU towers, P6 from P5) or ``retinanet_resnet50_fpn_v2`` (GroupNorm towers, P6 from C5).
        hidden_dim: generator width; at least the number of distinct anchor codes - 1 (27 - 1 for
            torchvision's default anchors over 5 levels).
        anchors: the anchors the weights were trained with (default: torchvision's, ``torchvision_anchor_set``).
        where: names the source in error messages.
        head: ``metaanchor`` (generators solved from the last convs) or ``predefined`` (last convs copied).
        width_option: how messages name ``hidden_dim``.
        detector_kwargs: overrides of the detector's arguments (default: ``TORCHVISION_DEFAULTS`` and the
            layout's ``LAYOUTS`` settings, labels = category ids 0..C-1, COCO names for 91 classes).
    Returns:
        the model (eval mode) with ``anchors`` as its anchor set; for a MetaAnchor head its generators give,
        for those anchors, the original last-conv weights (max residual of the solve in ``import_residual``).
    """
    _check_hidden_dim(hidden_dim, width_option)
    state = plain_state_dict(state_dict, where)
    backbone = _resnet_of(state, where)
    num_classes, k = _head_shape(state, where)
    anchors = anchors or torchvision_anchor_set()
    if anchors.num_anchors(5) != [k] * 5:
        raise UserError(f"{where}: the head has {k} anchors per position, the anchor set {anchors.spec} "
                        f"{anchors.num_anchors(5)}")
    layout = LAYOUTS[layout_of(state)]
    kwargs = TORCHVISION_DEFAULTS | layout | dict(
        num_classes=num_classes, backbone=backbone, fpn_channels=FPN_CHANNELS, head_convs=TOWER_CONVS,
        p6_input=_p6_input(state, layout["p6_input"]), anchors=anchors, category_ids=list(range(num_classes)),
        class_names=coco_class_names(num_classes))
    kwargs |= detector_kwargs
    with torch.random.fork_rng():  # the generator's W1 is drawn from a fixed seed: imports are reproducible
        torch.manual_seed(0)
        reference = RetinaNetDetector(head="predefined", **kwargs)
        if head == "predefined":
            model = reference
        else:
            model = RetinaNetDetector(head=head, hidden_dim=hidden_dim, **kwargs)
    _load_checked(reference, state, where)
    model.import_residual = 0.0
    if model is not reference:
        theirs = reference.state_dict()
        own = {k: v for k, v in theirs.items() if not k.startswith(("head.cls_logits.", "head.bbox_pred."))}
        model.load_state_dict(own, strict=False)  # all but the generators, which are solved next
        model.import_residual = _solve_generators(model, reference, anchors, width_option)
    return model.eval()


def import_named(name: str, option: str = "--weights", **kwargs) -> RetinaNetDetector:
    """``import_torchvision_retinanet`` of torchvision's COCO weights by name (``modeling.pretrained``:
    ``retinanet_resnet50_fpn_v2``, ``RetinaNet_ResNet50_FPN_Weights.COCO_V1``, ...), from torchvision's
    cache or downloaded there; offline and not cached a one-line UserError. ``kwargs`` as the import's."""
    state, short, where = detector_state_dict(name, f"{option} {name}" if option.startswith("-") else option)
    kwargs.setdefault("where", where)
    model = import_torchvision_retinanet(state, **kwargs)
    model.imported_from = DETECTORS[short][0]  # torchvision's name of the weights
    return model


# ----------------------------------------------------------------------------- fine-tuning
# the model settings torchvision's COCO weights fix: shapes, and the BatchNorm epsilon their statistics hold
_FIXED = ("backbone", "fpn_channels", "head_convs", "head_norm", "p6_input", "bn_eps")


def required_settings(name: str) -> dict:
    """The ``model`` settings a model must have to start from torchvision's COCO weights ``name``."""
    layout = LAYOUTS[DETECTORS[name][1]]
    return {k: v for k, v in (dict(backbone="resnet50", fpn_channels=FPN_CHANNELS, head_convs=TOWER_CONVS)
                              | layout).items() if k in _FIXED}


def init_from_torchvision(model, source: str) -> list[str]:
    """``model.init_from=torchvision:NAME``: copy torchvision's COCO RetinaNet ``NAME`` (imported as a
    MetaAnchor or predefined head, like ``model``) into a newly built ``model`` (fine-tuning).

    The model must have the architecture of those weights (``required_settings``; else a UserError naming
    the settings, before anything is fetched). With another class count, as for a checkpoint, the tensors
    whose shape depends on it keep their fresh initialisation. Returns the keys so left out."""
    from metaanchor.modeling.pretrained import detector_weights_name, known_detector_names

    option = f"model.init_from={source}"
    name = detector_weights_name(source)
    if name is None:
        raise UserError(f"{option}: not a torchvision weight name this library imports; choose one of "
                        f"torchvision:NAME with NAME one of {known_detector_names()}")
    cfg = getattr(model, "config", {})
    if not isinstance(model, RetinaNetDetector) or model.head_type == "metaanchor-dd":
        raise UserError(f"{option}: torchvision's RetinaNet weights start a model.arch=retinanet model with "
                        f"model.head=metaanchor or predefined, not model.arch={cfg.get('arch')} "
                        f"model.head={cfg.get('head')}")
    differ = {k: v for k, v in required_settings(name).items() if cfg[k] != v}
    if differ:
        need = ", ".join(f"model.{k}={v}" for k, v in differ.items())
        have = ", ".join(f"model.{k}={cfg[k]}" for k in differ)
        raise UserError(f"{option}: these weights need {need} (the config has {have})")
    start = import_named(source, option, hidden_dim=cfg["hidden_dim"], head=model.head_type,
                         width_option="model.hidden_dim")
    state, own = start.state_dict(), model.state_dict()
    new_classes = start.num_classes != model.num_classes
    mismatched = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    problems = state_dict_problems(own, state, check_shapes=not new_classes)
    if problems:
        raise UserError(f"{option}: weights do not fit the model: {'; '.join(problems)}")
    model.load_state_dict({k: v for k, v in state.items() if k not in mismatched and k in own}, strict=False)
    return mismatched


def _check_hidden_dim(hidden_dim: int, option: str) -> None:
    """The generator width within model.hidden_dim's range (its first layer is hidden_dim x anchors)."""
    try:
        check(RetinaNetDetector.Config, "hidden_dim", hidden_dim)
    except ConfigError:
        high = fields(RetinaNetDetector.Config)["hidden_dim"].metadata["high"]
        raise UserError(f"{_width(option, hidden_dim)}: must be an integer in 1..{high} "
                        "(the range of model.hidden_dim)") from None


def _load_checked(reference: RetinaNetDetector, state: dict[str, Tensor], where: str) -> None:
    """Load torchvision-keyed ``state`` into our predefined model; missing/unexpected/mis-shaped keys are a
    UserError naming them (BatchNorm's num_batches_tracked may be absent or extra: frozen BN ignores it).
    GroupNorm towers' conv biases, which torchvision's towers lack, are set to zero."""
    norm = reference.config["head_norm"]
    ours = reference.state_dict()
    keys = {k: torchvision_key(k, norm) for k in ours}
    expected = {t: ours[k] for k, t in keys.items() if t is not None}
    given = {k: v for k, v in state.items() if not BN_COUNTER.match(k)}
    problems = state_dict_problems(expected, given, reference="expected")
    if problems:
        raise UserError(f"{where}: does not fit a torchvision RetinaNet ({reference.config['backbone']}-FPN, "
                        f"{reference.num_classes} classes): {'; '.join(problems)}")
    def value(k: str, t: str | None) -> Tensor:
        if t is None:  # a GroupNorm tower's conv bias
            return torch.zeros_like(ours[k])
        return given.get(t, state.get(t, ours[k]))  # a BatchNorm counter may be absent

    reference.load_state_dict({k: value(k, t) for k, t in keys.items()}, strict=True)


def _width(option: str, hidden_dim: int) -> str:
    return f"{option}={hidden_dim}" if option.startswith("model.") else f"{option} {hidden_dim}"


def _solve_generators(model: RetinaNetDetector, reference: RetinaNetDetector, anchors: AnchorSet,
                      option: str = "--hidden-dim") -> float:
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
            raise UserError(f"{_width(option, hidden)}: too small for anchor set {anchors.spec} ({e})") from None
        per = gen.out_channels
        w = conv.weight.detach().view(-1, per, *conv.weight.shape[1:])[slot].flatten(0, 1)
        b = conv.bias.detach().view(-1, per)[slot].flatten()
        res = gen.fit_exact(codes, w, b)
        if res > 1e-6 * max(1.0, float(w.abs().max()), float(b.abs().max())):
            raise UserError(f"{_width(option, hidden)}: the generator cannot reproduce the {len(codes)} distinct "
                            f"codes of anchor set {anchors.spec} exactly (residual {res:.2g}); use a larger {option}")
        residual = max(residual, res)
    model.set_anchors(anchors)
    return residual
