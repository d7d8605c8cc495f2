import json
import math
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import GARBAGE
from hypothesis import given, settings
from hypothesis import strategies as st

from metaanchor.errors import AnchorSpecError, UserError
from metaanchor.geometry.anchors import AnchorSet, grid_anchors, sample_anchor_set

STANDARD = [32.0, 64.0, 128.0, 256.0, 512.0]


def flat(pairs):
    return [v for pair in pairs for v in pair]


def test_preset_3x3_is_retinanet_default():
    a = AnchorSet.parse("3x3")
    assert len(a) == 9
    scales = [1.0, 2 ** (1 / 3), 2 ** (2 / 3)]
    expected = [(s * math.sqrt(r), s / math.sqrt(r)) for r in (0.5, 1.0, 2.0) for s in scales]
    assert flat(a.shapes) == pytest.approx(flat(expected))


@pytest.mark.parametrize("spec,count", [("1x1", 1), ("5x5", 25), ("2x3", 6), ("1x3", 3), ("3x1", 3)])
def test_preset_counts(spec, count):
    assert AnchorSet.parse(spec).num_anchors(5) == [count] * 5


def test_5x5_ratios_span_one_third_to_three():
    a = AnchorSet.parse("5x5")
    ratios = sorted({round(h / w, 6) for h, w in a.shapes})
    assert ratios == pytest.approx([1 / 3, 0.5, 1, 2, 3], rel=1e-5)


def test_scales_ratios_string():
    a = AnchorSet.parse("scales=1,2;ratios=0.25,1")
    assert flat(a.shapes) == pytest.approx([0.5, 2.0, 1.0, 4.0, 1.0, 1.0, 2.0, 2.0])


def test_codes_are_log_of_size_over_standard_box():
    a = AnchorSet.parse("scales=2;ratios=4")  # h = 2*2 = 4, w = 2/2 = 1
    codes = a.codes(STANDARD)
    for c in codes:  # level-relative: the same code at every level
        assert c.flatten().tolist() == pytest.approx([math.log(4.0), math.log(1.0)])
    sizes = a.sizes(STANDARD)
    assert sizes[2].flatten().tolist() == pytest.approx([512.0, 128.0])


def test_json_file_level_relative(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps({"anchors": [[1, 1], [2, 0.5]]}))
    a = AnchorSet.parse(str(f))
    assert a.shapes == [(1.0, 1.0), (2.0, 0.5)]


def test_yaml_file_per_level(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("levels:\n" + "".join(f"  - [[{s}, {s}], [{2 * s}, {s}]]\n" for s in STANDARD))
    a = AnchorSet.parse(str(f))
    assert a.num_anchors(5) == [2] * 5
    codes = a.codes(STANDARD)
    assert codes[3].flatten().tolist() == pytest.approx([0.0, 0.0, math.log(2), 0.0])
    with pytest.raises(AnchorSpecError, match="has 5 levels but the model has 3"):
        a.num_anchors(3)


@pytest.mark.parametrize("spec,fragment", [
    ("", "empty"),
    ("3x", "not a preset"),
    ("axb", "not a preset"),
    ("0x3", "number of scales 0"),
    ("3x0", "number of ratios 0"),
    ("3x99", "number of ratios 99"),
    ("scales=1,-2", "scale '-2' must be a positive"),
    ("scales=0;ratios=1", "scale '0' must be a positive"),
    ("scales=nan", "scale 'nan' must be a positive"),
    ("ratios=inf", "ratio 'inf' must be a positive"),
    ("scales=1,abc", "scale 'abc' is not a number"),
    ("scales=;ratios=1", "scales list '' is empty"),
    ("ratios=1,,2", "ratios list '1,,2' is empty or has an empty item"),
    ("sizes=1,2", "unknown part 'sizes=1,2'"),
    ("scales=1;scales=2", "scales given twice"),
    ("missing_file.yaml", "not found"),
])
def test_malformed_spec_names_the_bad_part(spec, fragment):
    with pytest.raises(AnchorSpecError) as e:
        AnchorSet.parse(spec)
    assert fragment in str(e.value)


@pytest.mark.parametrize("content,fragment", [
    ('{"anchors": []}', "non-empty list"),
    ('{"anchors": [[1, -1]]}', "item 0 w=-1"),
    ('{"anchors": [[1]]}', "item 0 must be an [h, w] pair"),
    ('{"levels": [[[1, 1]], []]}', "level 1"),
    ('{"foo": 1}', "exactly one of 'anchors' or 'levels'"),
    ('{"anchors": [[1, 1]', "malformed JSON at line 1 column 20"),
])
def test_malformed_anchor_file(tmp_path, content, fragment):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(AnchorSpecError) as e:
        AnchorSet.parse(str(f))
    assert str(f) in str(e.value) and fragment in str(e.value)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.05, 20), min_size=1, max_size=5), st.lists(st.floats(0.1, 10), min_size=1, max_size=5))
def test_scales_ratios_roundtrip(scales, ratios):
    spec = "scales=" + ",".join(repr(s) for s in scales) + ";ratios=" + ",".join(repr(r) for r in ratios)
    a = AnchorSet.parse(spec)
    assert len(a) == len(scales) * len(ratios)
    got = [(h / w, math.sqrt(h * w)) for h, w in a.shapes]
    want = [(r, s) for r in ratios for s in scales]
    assert flat(got) == pytest.approx(flat(want), rel=1e-9)
    assert AnchorSet.from_dict(a.to_dict()) == a


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=20))
def test_random_text_parses_or_raises_anchor_error(text):
    try:
        a = AnchorSet.parse(text)
    except AnchorSpecError as e:
        assert str(e)
    else:
        assert len(a) >= 1 and all(h > 0 and w > 0 for h, w in a.shapes)


def test_grid_anchors_positions_and_order():
    sizes = AnchorSet.parse("1x3").sizes([32.0, 64.0])
    g = grid_anchors(sizes, [(2, 3), (1, 1)], [8, 16])
    assert g.shape == (2 * 3 * 3 + 1 * 1 * 3, 4)
    centres = (g[:, :2] + g[:, 2:]) / 2
    # position-major then anchor: first 3 rows share centre (0, 0); next 3 are at x = 8
    assert centres[:3].tolist() == [[0.0, 0.0]] * 3
    assert centres[3:6].tolist() == [[8.0, 0.0]] * 3
    assert centres[9].tolist() == [0.0, 8.0]  # row 1 starts after 3 positions x 3 anchors
    wh = g[:3, 2:] - g[:3, :2]
    assert wh[1].tolist() == pytest.approx([32.0, 32.0])  # ratio 1 -> square standard box
    assert torch.allclose(wh[0, 1] / wh[0, 0], torch.tensor(0.5))  # ratio h/w = 0.5


SPEC_PART = st.sampled_from(["scales", "ratios", "sizes", "=", ";", ",", "x", "3", "0", "1", "-1", "2.5", "nan",
                             "inf", "1e9", "1e-9", " ", "²", "٣", "16", "17", ".json", ".yaml"])


@settings(max_examples=300, deadline=None)
@given(st.lists(SPEC_PART, max_size=8).map("".join))
def test_fuzzed_anchor_specs_parse_to_usable_sets_or_raise_spec_error(spec):
    try:
        a = AnchorSet.parse(spec)
    except UserError as e:
        assert str(e)
        return
    codes = torch.cat(a.codes([32.0, 64.0, 128.0, 256.0, 512.0]))
    assert torch.isfinite(codes).all()


@settings(max_examples=150, deadline=None)
@given(GARBAGE | st.fixed_dictionaries({"anchors": GARBAGE}) | st.fixed_dictionaries({"levels": GARBAGE}),
       st.sampled_from([".json", ".yaml"]))
def test_fuzzed_anchor_files_parse_or_raise_spec_error(content, suffix):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / f"a{suffix}"
        try:
            f.write_text(json.dumps(content, allow_nan=True))
        except (ValueError, TypeError):
            return
        try:
            a = AnchorSet.parse(str(f))
        except UserError as e:
            assert str(f) in str(e)
            return
        levels = a.per_level or [a.shapes]
        assert all(h > 0 and w > 0 for lvl in levels for h, w in lvl)


def test_sampled_anchor_sets_stay_in_the_jitter_range_and_are_repeatable():
    base = AnchorSet.parse("3x3")
    a = sample_anchor_set(base, seed=0, iteration=5, scale_jitter=0.5, ratio_jitter=0.5)
    assert a == sample_anchor_set(base, seed=0, iteration=5, scale_jitter=0.5, ratio_jitter=0.5)
    assert a != sample_anchor_set(base, seed=0, iteration=6, scale_jitter=0.5, ratio_jitter=0.5)
    for (h0, w0), (h, w) in zip(base.shapes, a.shapes):
        size_change = abs(torch.log2(torch.tensor(h * w / (h0 * w0))) / 2)
        ratio_change = abs(torch.log2(torch.tensor((h / w) / (h0 / w0))))
        assert size_change <= 0.5 + 1e-6 and ratio_change <= 0.5 + 1e-6
