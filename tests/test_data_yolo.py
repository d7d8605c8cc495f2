"""YOLO txt: reading and writing label files and classes.txt."""

import tempfile
from pathlib import Path

import pytest
from data_samples import assert_same_objects, coco_sample, write_sample_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from metaanchor.data.yolo import read_yolo, write_yolo
from metaanchor.errors import DataError, UserError


def test_coco_yolo_coco_preserves_boxes_and_labels(tmp_path):
    original = coco_sample()
    write_sample_images(tmp_path / "images")
    write_yolo(original, tmp_path)
    assert (tmp_path / "classes.txt").read_text() == "cat\nbird\ndog\n"
    assert (tmp_path / "labels" / "c.txt").read_text() == ""  # image without objects
    first = (tmp_path / "labels" / "a.txt").read_text().splitlines()[0].split()
    assert first[0] == "0" and float(first[1]) == pytest.approx((1.25 + 10.333 / 2) / 40)
    back = read_yolo(tmp_path / "labels", tmp_path / "images")
    assert_same_objects(original, back, atol=1e-6)


@pytest.mark.parametrize("text, pattern", [
    ("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n", r"a\.txt: line 2: expected 'cls cx cy w h'"),
    ("0 0.5 0.5 0.2 0.2\n\n7 0.5 0.5 0.2 0.2\n", r"a\.txt: line 3: class 7 not in 0\.\.1"),
    ("0 0.5 zero 0.2 0.2\n", r"a\.txt: line 1: not numbers"),
    ("0 0.5 0.5 1.7 0.2\n", r"a\.txt: line 1: values must be normalised"),
    ("0 0.5 0.5 0 0.2\n", r"a\.txt: .*non-positive width"),
])
def test_malformed_yolo_txt_names_file_and_line(tmp_path, text, pattern):
    write_sample_images(tmp_path / "images")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text(text)
    with pytest.raises(DataError, match=pattern):
        read_yolo(tmp_path / "labels", tmp_path / "images", ["cat", "dog"])


def test_yolo_label_without_image_is_an_error(tmp_path):
    write_sample_images(tmp_path / "images")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "zzz.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"zzz\.txt: label file has no matching image"):
        read_yolo(tmp_path / "labels", tmp_path / "images", ["cat"])


def test_yolo_without_class_names_is_an_error(tmp_path):
    write_sample_images(tmp_path / "images")
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataError, match="classes.txt"):
        read_yolo(tmp_path / "labels", tmp_path / "images")


_box = st.tuples(
    st.integers(16, 400), st.integers(16, 400),  # image width, height
    st.floats(0, 1), st.floats(0, 1), st.floats(0.01, 1), st.floats(0.01, 1), st.integers(0, 2),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_box, min_size=1, max_size=6))
def test_random_boxes_survive_a_yolo_round_trip(specs):
    images, annotations = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        for k, (width, height, fx, fy, fw, fh, cls) in enumerate(specs):
            name = f"{k:03d}.png"
            Image.new("L", (width, height)).save(root / "images" / name)
            images.append({"id": k + 1, "file_name": name, "width": width, "height": height})
            w, h = max(fw * width, 0.01), max(fh * height, 0.01)
            x, y = fx * (width - w), fy * (height - h)
            annotations.append({"id": k + 1, "image_id": k + 1, "category_id": cls + 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        original = {"images": images, "annotations": annotations,
                    "categories": [{"id": i + 1, "name": n} for i, n in enumerate("abc")]}
        write_yolo(original, root)
        back = read_yolo(root / "labels", root / "images")
    assert_same_objects(original, back, atol=1e-5)


YOLO_TOKEN = st.sampled_from(["0", "1", "2", "-1", "0.5", "0.2", "1.0", "0", "nan", "inf", "1e-9", "x", "", "0.99"])


YOLO_LINE = st.lists(YOLO_TOKEN, max_size=6).map(" ".join) | st.text(max_size=15)


@settings(max_examples=150, deadline=None)
@given(st.lists(YOLO_LINE, max_size=4))
def test_fuzzed_yolo_lines_parse_or_raise_data_error(lines):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "images").mkdir()
        (d / "labels").mkdir()
        Image.new("RGB", (40, 30)).save(d / "images" / "a.png")
        (d / "labels" / "a.txt").write_bytes("\n".join(lines).encode("utf-8", "replace"))
        try:
            data = read_yolo(d / "labels", d / "images", ["a", "b"])
        except UserError as e:
            assert "a.txt" in str(e)
        else:
            assert all(0 <= a["category_id"] - 1 < 2 for a in data["annotations"])
