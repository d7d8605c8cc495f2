"""The range of anchor codes seen in training is stored; asking for codes outside it warns once."""

import math
import warnings

import pytest
import torch
import yaml
from conftest import TINY, cli, tiny_detector

from metaanchor.families import load_detector
from metaanchor.families.base import AnchorRangeWarning
from metaanchor.geometry.anchors import AnchorSet, code_range, sample_anchor_set, standard_sizes

SIZES = standard_sizes([8, 16, 32, 64, 128])


def test_code_range_holds_every_sampled_set_and_is_tight():
    base = AnchorSet.parse("3x3")
    lo, hi = code_range(base, SIZES, 0.5, 0.5)
    codes = torch.cat([torch.cat(sample_anchor_set(base, 0, it, 0.5, 0.5).codes(SIZES)) for it in range(3000)])
    assert (codes.min(0).values >= torch.tensor(lo) - 1e-6).all()
    assert (codes.max(0).values <= torch.tensor(hi) + 1e-6).all()
    margin = 0.75 * math.log(2)  # (scale_jitter + ratio_jitter / 2) ln 2
    assert (codes.min(0).values - torch.tensor(lo)).max() < 0.05 * margin  # the bound is reached, not loose
    assert (torch.tensor(hi) - codes.max(0).values).max() < 0.05 * margin
    lo0, hi0 = code_range(base, SIZES)  # no jitter: the set's own extremes, log(2^-0.5) and log(2^(2/3) 2^0.5)
    assert lo0 == pytest.approx([math.log(2 ** -0.5)] * 2, abs=1e-6)
    assert hi0 == pytest.approx([math.log(2 ** (2 / 3) * 2 ** 0.5)] * 2, abs=1e-6)


def _warnings(model, spec) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model.set_anchors(spec)
    return [str(w.message) for w in seen if issubclass(w.category, AnchorRangeWarning)]


def test_warning_fires_exactly_when_codes_leave_the_range_and_once_per_set():
    model = tiny_detector()
    model.set_code_range([-1.0, -1.0], [1.0, 1.0])  # b in [-1, 1]^2: square anchors of e^-1..e^1
    inside, edge, outside = (f"scales={math.exp(v)};ratios=1" for v in (0.5, 1.0, 1.01))
    assert _warnings(model, inside) == [] and _warnings(model, edge) == []
    (msg,) = _warnings(model, outside)
    assert msg == (f"anchor set {outside}: codes b_h 1.01..1.01, b_w 1.01..1.01 leave the range seen in training "
                   "(b_h -1.00..1.00, b_w -1.00..1.00); the generated weights there are extrapolated")
    assert _warnings(model, outside) == []  # once per set
    assert len(_warnings(model, "scales=0.3;ratios=1")) == 1  # below the range too
    assert len(_warnings(model, "scales=1;ratios=9")) == 1  # one axis out is enough (b_h = log 3)


def test_models_without_a_range_or_with_a_predefined_head_never_warn():
    assert _warnings(tiny_detector(), "scales=8;ratios=1") == []
    pre = tiny_detector(head="predefined", anchors="1x1")
    pre.set_code_range([-0.1, -0.1], [0.1, 0.1])
    assert _warnings(pre, "scales=2;ratios=1") == []


def test_training_stores_the_range_and_eval_warns_in_one_line(synth_dirs, tmp_path, capsys):
    train, val = synth_dirs
    out = tmp_path / "run"
    code, _, _ = cli(capsys, "train", "--out", out, "--no-progress", f"data.train={train}", "solver.max_iter=1",
                     "anchors.train=3x3", "anchors.scale_jitter=0.5", "anchors.ratio_jitter=0.5", *TINY)
    assert code == 0
    model = load_detector(out / "last.pt")
    expected = code_range(AnchorSet.parse("3x3"), model.standard_sizes, 0.5, 0.5)
    assert model.config["code_range"][0] == pytest.approx(expected[0])
    assert model.config["code_range"][1] == pytest.approx(expected[1])
    assert yaml.safe_load((out / "config.yaml").read_text())["anchors"]["sample"] is True
    code, _, err = cli(capsys, "eval", "--checkpoint", out / "last.pt", "--data", val, "--anchors", "5x5",
                       "--device", "cpu")
    assert code == 0 and not [e for e in err if e.startswith("warning: anchor set")]  # 5x5 lies inside
    code, _, err = cli(capsys, "eval", "--checkpoint", out / "last.pt", "--data", val, "--anchors",
                       "scales=4;ratios=1", "--device", "cpu")
    assert code == 0
    (line,) = [e for e in err if "leave the range seen in training" in e]
    assert line.startswith("warning: anchor set scales=4;ratios=1: codes b_h 1.39..1.39")
