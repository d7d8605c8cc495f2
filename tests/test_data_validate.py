"""COCO dict validation: messages naming file and record, skip_invalid accounting, clipping, warnings."""

import copy
import math

import pytest
from conftest import GARBAGE
from data_samples import dataset_sample, write_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from metaanchor.data import CocoDataset
from metaanchor.data.validate import validate_coco
from metaanchor.errors import DataError


def _mutate(fn):
    data = dataset_sample()
    fn(data)
    return data


def _set(record, **kw):
    record.update(kw)


# (mutation, regex the message must match besides the file name)
FATAL_CASES = {
    "missing_key": (lambda d: d.pop("categories"), r"missing required key 'categories'"),
    "no_images": (lambda d: d.update(images=[]), r"dataset has no images"),
    "duplicate_image": (lambda d: _set(d["images"][1], id=3), r"image id 3: duplicate image id"),
    "bad_image_size": (lambda d: _set(d["images"][1], width=0),
                       r"images\[1\] \(image id 8\): 'width' must be a positive integer"),
    "duplicate_category": (lambda d: _set(d["categories"][1], id=9),
                           r"category id 9: duplicate"),
}

ANNOTATION_CASES = {
    "duplicate_id": (lambda d: _set(d["annotations"][1], id=17),
                     r"annotation id 17 \(image 3\): duplicate annotation id"),
    "unknown_image": (lambda d: _set(d["annotations"][1], image_id=99),
                      r"annotation id 18 \(image 99\): refers to unknown image id 99"),
    "unknown_category": (lambda d: _set(d["annotations"][1], category_id=4),
                         r"annotation id 18 \(image 3\): unknown category id 4"),
    "non_positive_size": (lambda d: _set(d["annotations"][0], bbox=[5, 5, -2.0, 3]),
                          r"annotation id 17 \(image 3\): box has non-positive width -2\.0"),
    "zero_height": (lambda d: _set(d["annotations"][0], bbox=[5, 5, 2, 0]),
                    r"annotation id 17 \(image 3\): box has non-positive height 0"),
    "non_finite_bbox": (lambda d: _set(d["annotations"][1], bbox=[1, math.inf, 2, 2]),
                        r"annotation id 18 \(image 3\): box has a NaN or infinite value"),
    "malformed_bbox": (lambda d: _set(d["annotations"][1], bbox=[1, 2, 3]),
                       r"annotation id 18 \(image 3\): 'bbox' must be a list of 4 numbers"),
    "missing_bbox": (lambda d: d["annotations"][1].pop("bbox"),
                     r"annotation id 18 \(image 3\): missing required key 'bbox'"),
    "outside_image": (lambda d: _set(d["annotations"][1], bbox=[50, 5, 10, 10]),
                      r"annotation id 18 \(image 3\): box .* outside the 40x30 image"),
    "clipped": (lambda d: _set(d["annotations"][1], bbox=[30, 5, 15, 10]),
                r"annotation id 18 \(image 3\): box .* outside the 40x30 image"),
}


@pytest.mark.parametrize("case", sorted(FATAL_CASES) + sorted(ANNOTATION_CASES))
def test_invalid_record_raises_data_error_naming_file_and_record(tmp_path, case):
    mutate, pattern = {**FATAL_CASES, **ANNOTATION_CASES}[case]
    folder = write_dataset(tmp_path / "ds", _mutate(mutate), images=False)
    with pytest.raises(DataError, match=r"annotations\.json: " + pattern):
        CocoDataset(folder)


@pytest.mark.parametrize("case", sorted(FATAL_CASES))
def test_file_level_problems_are_errors_even_with_skip_invalid(tmp_path, case):
    folder = write_dataset(tmp_path / "ds", _mutate(FATAL_CASES[case][0]), images=False)
    with pytest.raises(DataError):
        CocoDataset(folder, skip_invalid=True)


@pytest.mark.parametrize("case", sorted(ANNOTATION_CASES))
def test_skip_invalid_drops_and_counts_the_bad_annotation(tmp_path, case):
    folder = write_dataset(tmp_path / "ds", _mutate(ANNOTATION_CASES[case][0]))
    ds = CocoDataset(folder, skip_invalid=True)
    reason = "non_positive_size" if case == "zero_height" else case
    reason = "missing_key" if case == "missing_bbox" else reason
    assert ds.skipped == {reason: 1}
    assert len(ds.warnings) == 1 and "annotations.json" in ds.warnings[0]
    boxes = ds[0][1]["boxes"]
    if case == "clipped":  # repaired, not dropped
        assert boxes.tolist()[1] == [30, 5, 40, 15]
    else:
        assert len(boxes) == 1 and len(ds.coco.getAnnIds()) == 1


def test_boxes_within_one_pixel_outside_are_clipped_quietly(tmp_path):
    data = _mutate(lambda d: _set(d["annotations"][1], bbox=[-0.5, 5, 40.9, 10]))
    ds = CocoDataset(write_dataset(tmp_path / "ds", data))
    assert not ds.skipped
    assert ds[0][1]["boxes"].tolist()[1] == [0, 5, 40, 15]


def test_skipping_is_logged(tmp_path, caplog):
    data = _mutate(lambda d: _set(d["annotations"][1], category_id=4))
    with caplog.at_level("WARNING"):
        CocoDataset(write_dataset(tmp_path / "ds", data), skip_invalid=True)
    assert "unknown_category" in caplog.text


def test_boxes_under_two_pixels_are_kept_with_one_warning_naming_the_smallest(tmp_path, caplog):
    data = _mutate(lambda d: _set(d["annotations"][1], bbox=[30, 5, 1, 1]))
    with caplog.at_level("WARNING"):
        ds = CocoDataset(write_dataset(tmp_path / "tiny", data))
    assert len(ds.coco.getAnnIds()) == 2 and not ds.skipped
    assert len(caplog.records) == 1
    ann = data["annotations"][1]
    assert (f"1 box(es) under 2 px on a side, most likely annotation errors (kept); the smallest: annotation id "
            f"{ann['id']} (image {ann['image_id']}, ") in caplog.text and caplog.text.rstrip().endswith(") 1x1 px")
    caplog.clear()
    with caplog.at_level("WARNING"):
        CocoDataset(write_dataset(tmp_path / "two", _mutate(lambda d: _set(d["annotations"][1], bbox=[30, 5, 2, 2]))))
    assert not caplog.records


def test_validation_does_not_modify_caller_data():
    data = _mutate(lambda d: _set(d["annotations"][1], bbox=[30, 5, 15, 10]))
    before = copy.deepcopy(data)
    validate_coco(data, "x.json", skip_invalid=True)
    assert data == before


SMALL_INT = st.integers(-2, 4)


MAYBE = lambda good: good | GARBAGE  # noqa: E731 - mostly plausible values, sometimes garbage


IMAGE = st.fixed_dictionaries({"id": MAYBE(SMALL_INT), "file_name": MAYBE(st.just("a.png")),
                               "width": MAYBE(st.integers(0, 64)), "height": MAYBE(st.integers(0, 64))},
                              optional={"extra": GARBAGE})


BOX = st.lists(st.floats(-10, 80) | st.integers(-10, 80), min_size=4, max_size=4)


ANNOTATION = st.fixed_dictionaries({"id": MAYBE(SMALL_INT), "image_id": MAYBE(SMALL_INT),
                                    "category_id": MAYBE(SMALL_INT), "bbox": MAYBE(BOX)},
                                   optional={"iscrowd": MAYBE(st.sampled_from([0, 1])),
                                             "area": GARBAGE, "segmentation": GARBAGE})


CATEGORY = st.fixed_dictionaries({"id": MAYBE(SMALL_INT), "name": MAYBE(st.sampled_from(["cat", "dog"]))})


COCO = st.fixed_dictionaries({"images": MAYBE(st.lists(MAYBE(IMAGE), max_size=3)),
                              "annotations": MAYBE(st.lists(MAYBE(ANNOTATION), max_size=5)),
                              "categories": MAYBE(st.lists(MAYBE(CATEGORY), max_size=3))},
                             optional={"info": GARBAGE}) | GARBAGE


@settings(max_examples=300, deadline=None)
@given(COCO, st.booleans())
def test_fuzzed_coco_dicts_validate_or_raise_data_error(data, skip):
    try:
        clean, skipped, _ = validate_coco(data, "fuzz.json", skip_invalid=skip)
    except DataError as e:
        assert str(e).startswith("fuzz.json: ")
        return
    from metaanchor.data.coco import coco_from_dict

    coco_from_dict(clean)  # pycocotools accepts whatever validation let through
    for a in clean["annotations"]:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and math.isfinite(x + y + w + h) and a["iscrowd"] in (0, 1)
