"""Outputs that must not depend on things they should not: the batch, stale caches, undefined COCO metrics,
and anchor-search inputs the search cannot take."""

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_detector
from torch import nn

from metaanchor.cli import main
from metaanchor.cli.train import print_summary
from metaanchor.data.synth import synth_config, write_synth_dataset
from metaanchor.engine.anchor_search import search_anchors
from metaanchor.families.retinanet.heads import MetaAnchorHead
from metaanchor.geometry.anchors import AnchorSet
from metaanchor.geometry.box_coder import BoxCoder
from metaanchor.modeling.backbones import STRIDES
from metaanchor.modeling.postprocess import postprocess

STANDARD = [32.0, 64.0, 128.0]
C, CH = 5, 16


def _features(b=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, CH, s, s, generator=g).to(dtype) for s in (8, 4, 2)]


def _meta_head():
    torch.manual_seed(0)
    head = MetaAnchorHead(CH, C, num_convs=1, hidden_dim=8, residual_std=0.05)
    head.set_anchors(AnchorSet.parse("3x3").codes(STANDARD))
    return head.eval()


def _reference_cls(head, feats):
    """Class logits with freshly generated weights (no cache), in the features' dtype."""
    codes = head.codes[0].to(feats[0].dtype)
    w, b = head.cls_generator(codes)
    return [F.conv2d(head.cls_tower(x), w, b, padding=1) for x in feats]


# ---------------------------------------------------------------- generated-weight cache
def test_generated_weight_cache_sees_in_place_edits_through_data():
    head, feats = _meta_head(), _features()
    with torch.no_grad():
        before = head(feats)[0]
        head.cls_generator.fc2.weight.data.mul_(3.0)  # .data edits do not bump the parameter's version
        head.cls_generator.bias.data.add_(1.0)
        after = head(feats)[0]
        assert not torch.allclose(before, after)
        want = torch.cat([o.permute(0, 2, 3, 1).reshape(2, -1, C) for o in _reference_cls(head, feats)], 1)
        torch.testing.assert_close(after, want)


def test_generated_weight_cache_follows_dtype_conversion():
    head, feats = _meta_head(), _features()
    with torch.no_grad():
        head(feats)  # fills the cache in float32
        head.double()
        feats64 = [f.double() for f in feats]
        cls, reg = head(feats64)
        assert cls.dtype == reg.dtype == torch.float64
        want = torch.cat([o.permute(0, 2, 3, 1).reshape(2, -1, C) for o in _reference_cls(head, feats64)], 1)
        torch.testing.assert_close(cls, want, rtol=1e-12, atol=1e-12)


def test_detector_runs_in_float64_after_a_float32_forward():
    det = tiny_detector().eval()
    det.score_thresh = 0.0
    img = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        d32 = det([img])[0]
        det.double()
        d64 = det([img.double()])[0]
    assert len(d64["scores"]) == len(d32["scores"]) > 0
    torch.testing.assert_close(d64["scores"].float().sort().values, d32["scores"].sort().values, rtol=1e-4,
                               atol=1e-5)


# ---------------------------------------------------------------- batch independence
class _CellBackbone(nn.Module):
    """P3..P7 = 1x1 conv of the image averaged over each stride cell: a feature depends only on its own cell,
    so an image's features are the same whatever padding the batch adds (a real CNN's are not, near the border)."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(3, channels, 1, bias=False) for _ in STRIDES)

    def forward(self, x):
        return [p(F.avg_pool2d(x, s, s)) for p, s in zip(self.proj, STRIDES)]


def _batch_independent_detector():
    det = tiny_detector(head_convs=0, min_size=128, max_size=256).eval()
    torch.manual_seed(1)
    det.backbone = _CellBackbone(16)
    with torch.no_grad():  # spread the scores (no near-ties) and move boxes well away from their anchors
        det.head.cls_generator.weight.normal_(0, 0.15)
        det.head.cls_generator.bias.fill_(-4.0)
        det.head.cls_generator.fc2.weight.normal_(0, 0.03)  # anchors of one position score differently
        det.head.reg_generator.weight.normal_(0, 0.05)
    det.score_thresh = 0.3
    return det


def _assert_no_near_ties(det, image):
    """Candidate scores near or above the threshold are distinct by far more than float noise."""
    with torch.no_grad():
        cls, _ = det.head(det.backbone(det.batcher([image])[0]))
    s = torch.sigmoid(cls.flatten())
    s = s[s > det.score_thresh - 0.05].sort().values
    assert 10 < len(s) and s.diff().min() > 1e-6


def _image(h, w, seed):
    """Random 8x8-pixel blocks, so every P3..P7 cell sees a different colour."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), scale_factor=8.0)[0]


def _assert_same_detections(a, b):
    assert len(a["scores"]) == len(b["scores"]) > 0
    oa, ob = a["scores"].argsort(descending=True), b["scores"].argsort(descending=True)
    torch.testing.assert_close(a["scores"][oa], b["scores"][ob], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a["boxes"][oa], b["boxes"][ob], rtol=1e-4, atol=1e-3)
    assert torch.equal(a["labels"][oa], b["labels"][ob])


def test_detections_of_an_image_do_not_depend_on_the_rest_of_the_batch():
    det = _batch_independent_detector()
    small, narrow = _image(128, 128, 0), _image(128, 64, 3)  # narrow: padded to 128 even alone
    wide, tall = _image(128, 256, 1), _image(256, 128, 2)
    for im in (small, narrow, wide, tall):
        _assert_no_near_ties(det, im)  # no float tie decides top-k or NMS
    with torch.no_grad():
        for im in (small, narrow):
            alone = det([im])[0]
            assert (alone["boxes"][:, 2] >= im.shape[-1] - 0.1).any()  # boxes reach the border: clipping matters
            assert len(alone["scores"]) < det.detections_per_img
            for other in (wide, tall):
                batched = det([im, other])
                _assert_same_detections(alone, batched[0])
                _assert_same_detections(det([other])[0], batched[1])


def test_postprocess_clips_each_image_before_nms_and_ignores_its_padding():
    """Image 0 is 100 px wide, image 1 fills the 256 px canvas. Two boxes of image 0 overlap (IoU 0.68) only
    because they run past its right edge: clipped to the image (IoU 0.25) both must survive. An anchor centred
    at x=160 lies in image 0's padding: its (best) score must not give image 0 a detection."""
    coder = BoxCoder()
    anchors = torch.tensor([[40.0, 0, 80, 40], [40, 0, 80, 40], [140, 0, 180, 40]])
    boxes = torch.tensor([[60.0, 0, 220, 40], [90, 0, 250, 40], [140, 0, 180, 40]])
    deltas = coder.encode(boxes, anchors)[None].repeat(2, 1, 1)
    logits = torch.tensor([[2.0], [1.0], [3.0]])[None].repeat(2, 1, 1)
    sizes = torch.tensor([[40, 100], [40, 256]])
    out = postprocess(logits, deltas, anchors, [3], sizes, coder, 0.05, 0.5, 1000, 100)
    torch.testing.assert_close(out[0]["boxes"], torch.tensor([[60.0, 0, 100, 40], [90, 0, 100, 40]]))
    torch.testing.assert_close(out[1]["boxes"], boxes[[2, 0]])
    # one (H, W) for the whole batch still works (every image fills the canvas)
    whole = postprocess(logits, deltas, anchors, [3], (40, 256), coder, 0.05, 0.5, 1000, 100)
    torch.testing.assert_close(whole[0]["boxes"], out[1]["boxes"])


# ---------------------------------------------------------------- undefined COCO metrics
TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
        "input.size=64", "solver.batch_size=2", "device=cpu", "log.period=1"]


def _strict_json(text):
    def refuse(name):
        raise AssertionError(f"{name} in JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def small_objects(tmp_path_factory):
    """Boxes of 12-32 px only: no large objects, so APl and ARl are undefined."""
    return write_synth_dataset(tmp_path_factory.mktemp("small") / "ds", 6, synth_config("small", seed=5),
                               progress=False)


@pytest.mark.parametrize("score_thresh", [0.0, 0.999], ids=["detections", "no-detections"])
def test_undefined_metrics_are_null_in_json_and_na_in_printed_output(tmp_path, capsys, small_objects, score_thresh):
    ckpt = tmp_path / "m.pt"
    tiny_detector(class_names=["a", "b", "c"], score_thresh=score_thresh).save(ckpt)
    out = tmp_path / "m.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(small_objects), "--device", "cpu",
                 "--json-out", str(out)]) == 0
    m = _strict_json(out.read_text())
    assert m["APl"] is None and m["ARl"] is None
    for k in ("AP", "AP50", "APs", "AR100"):
        assert isinstance(m[k], float) and 0.0 <= m[k] <= 1.0
    printed = capsys.readouterr().out
    assert "-1.000" not in printed
    if score_thresh == 0.0:  # pycocotools' summary is printed
        assert [ln.split("=")[-1].strip() for ln in printed.splitlines() if "area= large" in ln] == ["n/a"] * 2


def test_training_table_csv_and_best_checkpoint_with_undefined_metrics(tmp_path, capsys, small_objects):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", f"data.train={small_objects}",
                 f"data.val={small_objects}", "solver.max_iter=2", "eval.score_thresh=0.0", *TINY]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert rows[-1]["APl"] == rows[-1]["ARl"] == "" and rows[-1]["AP"] != ""
    assert (out / "best.pt").is_file()
    table = capsys.readouterr().out.splitlines()
    header = next(i for i, ln in enumerate(table) if ln.startswith("anchors") and ln.rstrip().endswith("APl"))
    assert table[header + 1].split()[-1] == "n/a"


def test_print_summary_shows_undefined_metrics_as_na(capsys):
    m = {"AP": 0.25, "AP50": 0.5, "AP75": 0.2, "APs": 0.1, "APm": None, "APl": None}
    print_summary({"iterations": 3, "wall_time_s": 1.0, "metrics": {"3x3": m}}, "runs/x")
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row == ["3x3", "0.250", "0.500", "0.200", "0.100", "n/a", "n/a"]


def test_anchor_search_scores_an_undefined_ap_as_worst():
    scores = {"scales=1;ratios=1": None}
    res = search_anchors(lambda spec: scores.get(spec, 0.1), (1.0,), (1.0,), budget=4)
    assert res.tried[0][1] == float("-inf") and res.best[1] == 0.1


# ---------------------------------------------------------------- anchor search inputs
@pytest.fixture(scope="module")
def search_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "m.pt"
    tiny_detector(class_names=["circle", "square", "triangle"]).save(path)
    return path


def _one_line_error(capsys, args, *fragments):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err  # one line, no traceback
    assert err[0].startswith("metaanchor anchors: error: "), err[0]
    for f in fragments:
        assert f in err[0], err[0]
    return err[0]


def test_anchor_search_refuses_a_start_set_larger_than_the_search_allows(tmp_path, capsys, synth_dirs, search_ckpt):
    train, val = synth_dirs
    kmeans = tmp_path / "k9.json"
    assert main(["anchors", "fit", "--data", str(train), "--num", "9", "--out", str(kmeans)]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["anchors", "search", "--checkpoint", search_ckpt, "--data", val, "--device", "cpu",
                             "--start", kmeans, "--out", tmp_path / "found.json"],
                    f"--start {kmeans}", "81 anchors", "at most 25")
    assert not (tmp_path / "found.json").exists()


def test_anchor_search_budget_must_be_positive(tmp_path, capsys, synth_dirs, search_ckpt):
    _, val = synth_dirs
    msg = _one_line_error(capsys, ["anchors", "search", "--checkpoint", search_ckpt, "--data", val, "--device", "cpu",
                                   "--budget", "0", "--out", tmp_path / "found.json"])
    assert msg.endswith("--budget 0: must be at least 1")


def test_anchor_search_with_a_valid_start_and_budget_runs(tmp_path, capsys, synth_dirs, search_ckpt):
    _, val = synth_dirs
    out = tmp_path / "found.json"
    assert main(["anchors", "search", "--checkpoint", str(search_ckpt), "--data", str(val), "--device", "cpu",
                 "--start", "2x2", "--budget", "1", "--out", str(out)]) == 0
    assert "best: scales=" in capsys.readouterr().out and out.is_file()
