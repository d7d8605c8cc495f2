"""Interop with torchvision's ``RetinaNet``: export a predefined-anchor model, import a torchvision one.

Export (``metaanchor export --format torchvision``; a MetaAnchor model is baked to a
predefined-anchor one first) writes two files:

    OUT.pth    a plain state dict: torchvision's own RetinaNet loads it with ``strict=True``
    OUT.json   how to build that RetinaNet: backbone, classes, transform, post-processing and
               the exact anchors (``load_torchvision_export`` does it)

    net = load_torchvision_export("retina.pth")      # a torchvision RetinaNet, eval mode
    # by hand: build torchvision.models.detection.RetinaNet as OUT.json says, then
    # net.anchor_generator.cell_anchors = [torch.tensor(a) for a in build["anchors"]["cell_anchors"]]
    # net.load_state_dict(torch.load("retina.pth"))

The anchors are given as torchvision's ``cell_anchors`` (per level [K, 4] x1y1x2y2 centred at 0):
``AnchorGenerator(sizes, aspect_ratios)`` rounds its boxes to whole pixels, so the nominal sizes alone
would not reproduce ours. Order (ratio-major, then scale; per position; centres at x * stride) and
channel layout (anchor-major, then class) are the same in both libraries.

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

import json
import re
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.retinanet import _default_anchorgen
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from metaanchor.checkpoint import BN_COUNTER, key_names, load_tensor_file, state_dict_problems
from metaanchor.deploy.verify import same_detections
from metaanchor.errors import UserError, first_line
from metaanchor.families.retinanet import RetinaNetDetector
from metaanchor.files import write_atomic, write_text
from metaanchor.geometry.anchors import AnchorSet, cell_anchors
from metaanchor.modeling.backbones import RESNETS

BUILD_FORMAT = "metaanchor-torchvision-retinanet"
TOWER_CONVS = 4  # torchvision's RetinaNetHead has 4 convs per tower
FPN_CHANNELS = 256
# torchvision's retinanet_resnet50_fpn defaults, used for imported models
TORCHVISION_DEFAULTS = dict(min_size=800, max_size=1333, detections_per_img=300, score_thresh=0.05,
                            nms_thresh=0.5, topk_candidates=1000)
# (bottleneck blocks?, blocks in layer3) -> ResNet depth
RESNET_LAYOUTS = {(False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50", (True, 23): "resnet101"}
# our key prefix -> torchvision's (first match wins; tower conv i is our Sequential index 2i)
_PREFIXES = [("backbone.body.", "backbone."), ("head.cls_logits.", "head.classification_head.cls_logits."),
             ("head.bbox_pred.", "head.regression_head.bbox_reg.")]
_TOWERS = {"cls_tower": "classification_head", "reg_tower": "regression_head"}


# ----------------------------------------------------------------------------- key mapping
def torchvision_key(key: str) -> str:
    """Our RetinaNetDetector state-dict key -> torchvision RetinaNet's (predefined-anchor head)."""
    m = re.fullmatch(r"head\.(cls_tower|reg_tower)\.(\d+)\.(\w+)", key)
    if m:
        return f"head.{_TOWERS[m[1]]}.conv.{int(m[2]) // 2}.0.{m[3]}"
    for ours, theirs in _PREFIXES:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    raise ValueError(f"no torchvision RetinaNet key for {key}")


def _check_exportable(model) -> None:
    """A torchvision RetinaNet has a ResNet-FPN backbone (256 channels), 4-conv towers without norm."""
    cfg = getattr(model, "config", {})
    if not isinstance(model, RetinaNetDetector):
        raise UserError(f"torchvision RetinaNet export: needs a model.arch=retinanet model, not {cfg.get('arch')}")
    bad = [f"model.{k}={cfg[k]}" for k, ok in (("backbone", cfg["backbone"] in RESNETS),
                                               ("fpn_channels", cfg["fpn_channels"] == FPN_CHANNELS),
                                               ("head_convs", cfg["head_convs"] == TOWER_CONVS),
                                               ("head_norm", cfg["head_norm"] == "none")) if not ok]
    if bad:
        raise UserError(f"torchvision RetinaNet export: {', '.join(bad)} has no torchvision RetinaNet equivalent "
                        f"(needs a ResNet backbone, fpn_channels={FPN_CHANNELS}, head_convs={TOWER_CONVS}, "
                        "head_norm=none)")


def torchvision_state_dict(model: RetinaNetDetector) -> dict[str, Tensor]:
    """The state dict of a predefined-anchor RetinaNetDetector under torchvision RetinaNet's keys."""
    _check_exportable(model)
    if model.head_type != "predefined":
        raise UserError("torchvision RetinaNet export: needs a predefined-anchor head; bake the MetaAnchor "
                        "model with an anchor set first (metaanchor export bakes it)")
    return {torchvision_key(k): v.detach().cpu().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- building
def torchvision_build(model: RetinaNetDetector) -> dict:
    """What ``build_torchvision_retinanet`` needs to rebuild ``model`` in torchvision (JSON-able)."""
    _check_exportable(model)
    sizes = model.anchors.sizes(model.standard_sizes)  # per level [K, 2] (h, w)
    batcher = model.batcher
    return {
        "format": BUILD_FORMAT, "backbone": model.config["backbone"], "frozen_bn": bool(model.config["frozen_bn"]),
        "num_classes": model.num_classes, "class_names": model.class_names, "category_ids": model.category_ids,
        # torchvision derives each level's stride as padded size // feature size: exact only at multiples of 128
        "min_size": batcher.min_size, "max_size": batcher.max_size, "size_divisible": max(model.strides),
        "image_mean": batcher.mean.flatten().tolist(), "image_std": batcher.std.flatten().tolist(),
        "score_thresh": model.score_thresh, "nms_thresh": model.nms_thresh,
        "detections_per_img": model.detections_per_img, "topk_candidates": model.topk_candidates,
        "anchors": {"spec": model.anchors.spec, "cell_anchors": [cell_anchors(s).tolist() for s in sizes]},
    }


def build_torchvision_retinanet(build: dict) -> RetinaNet:
    """A torchvision RetinaNet (random weights, eval mode) as ``build`` (``torchvision_build``) describes."""
    norm = FrozenBatchNorm2d if build["frozen_bn"] else nn.BatchNorm2d
    backbone = resnet_fpn_backbone(backbone_name=build["backbone"], weights=None, norm_layer=norm, trainable_layers=5,
                                   returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS))
    cells = [torch.tensor(a, dtype=torch.float32) for a in build["anchors"]["cell_anchors"]]
    # sizes/ratios only fix the anchor count per level; the exact boxes are the cell anchors
    generator = AnchorGenerator(tuple((1.0,) for _ in cells), tuple((1.0,) * len(c) for c in cells))
    generator.cell_anchors = cells
    net = RetinaNet(backbone, build["num_classes"], min_size=build["min_size"], max_size=build["max_size"],
                    image_mean=build["image_mean"], image_std=build["image_std"], anchor_generator=generator,
                    score_thresh=build["score_thresh"], nms_thresh=build["nms_thresh"],
                    detections_per_img=build["detections_per_img"], topk_candidates=build["topk_candidates"],
                    size_divisible=build["size_divisible"])
    return net.eval()


def torchvision_retinanet_for(model: RetinaNetDetector) -> RetinaNet:
    """A torchvision RetinaNet matching ``model``: backbone, FPN, classes, exact anchors, transform and
    post-processing settings (random weights; load ``torchvision_state_dict(model)`` into it)."""
    return build_torchvision_retinanet(torchvision_build(model))


# ----------------------------------------------------------------------------- export
def sidecar_path(output: str | Path) -> Path:
    """Where the build description of an exported state dict goes: OUT.pth -> OUT.json."""
    return Path(output).with_suffix(".json")


def export_torchvision(model: RetinaNetDetector, output: str | Path) -> Path:
    """Write a predefined-anchor model as torchvision RetinaNet weights (OUT, a plain state dict loadable
    with ``strict=True``) and its build description (OUT.json, see ``load_torchvision_export``). Returns OUT."""
    output = Path(output)
    if output.suffix == ".json":
        raise UserError(f"--output {output}: the state dict needs another name (e.g. .pth); "
                        "its build description is written next to it as .json")
    state = torchvision_state_dict(model)
    build = torchvision_build(model)
    write_atomic(output, lambda f: torch.save(state, f))
    write_text(sidecar_path(output), json.dumps(build, indent=1) + "\n")
    return output


def load_torchvision_export(output: str | Path) -> RetinaNet:
    """The torchvision RetinaNet an ``export_torchvision`` file describes, its weights loaded strictly (eval)."""
    output = Path(output)
    side = sidecar_path(output)
    try:
        build = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{side}: cannot read the build description of {output}: {first_line(e)}") from None
    if not isinstance(build, dict) or build.get("format") != BUILD_FORMAT:
        raise UserError(f"{side}: not a {BUILD_FORMAT} build description")
    net = build_torchvision_retinanet(build)
    net.load_state_dict(read_state_dict(output, "--output"), strict=True)
    return net


@torch.inference_mode()
def verify_torchvision(model: RetinaNetDetector, output: str | Path, images: list[Tensor],
                       tol: float = 1e-4) -> dict:
    """Check an exported file against ``model`` (predefined head, the exported anchors).

    Args:
        images: [3, H, W] floats in [0, 1].
    Returns:
        {"max_abs_diff": largest |difference| of the raw head outputs (logits and box deltas, both heads
        run on our batch), "match": both full pipelines (transform, anchors, post-processing) give the same
        detections (same count, labels, scores within ``tol``, boxes within 1e-2 px), "detections": how many
        detections of ours were compared (all images)}.
    """
    net = load_torchvision_export(output)
    model.eval()
    batch, _, _ = model._batch(images)
    ours = model.head(model.backbone(batch))
    outs = net.head(list(net.backbone(batch).values()))
    theirs = (outs["cls_logits"], outs["bbox_regression"])
    diff = max(float((a - b).abs().max()) for a, b in zip(ours, theirs))
    ours, theirs = model(images), net(images)
    match = same_detections(ours, theirs, score_tol=tol)
    return {"max_abs_diff": diff, "match": match, "detections": sum(len(d["scores"]) for d in ours)}


# ----------------------------------------------------------------------------- import
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


def read_state_dict(path: str | Path, option: str) -> dict:
    state = load_tensor_file(path, f"{option} {path}", "not a PyTorch state dict")
    return _plain_state_dict(state, f"{option} {path}")


def _plain_state_dict(state, where: str) -> dict[str, Tensor]:
    if isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        state = state.get("model", state.get("state_dict", state))  # a training checkpoint around it
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and torch.is_tensor(v)
                                                           for k, v in state.items()):
        raise UserError(f"{where}: not a state dict (a mapping of parameter names to tensors)")
    return state


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
    state = _plain_state_dict(state_dict, where)
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
