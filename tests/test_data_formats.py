"""COCO / Pascal VOC / YOLO readers, writers and conversion."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from metaanchor.data import (
    CocoDataset,
    SynthConfig,
    convert,
    read_coco,
    read_voc,
    read_yolo,
    write_coco,
    write_synth_dataset,
    write_voc,
    write_yolo,
)
from metaanchor.errors import DataError, UserError

SIZES = {"a.png": (40, 30), "sub/b.png": (64, 48), "c.png": (20, 20)}


def _coco_dict():
    images = [{"id": 10 + k, "file_name": n, "width": w, "height": h}
              for k, (n, (w, h)) in enumerate(SIZES.items())]
    boxes = [(10, 0, [1.25, 2.5, 10.333, 7.1]), (10, 7, [0, 0, 40, 30]),
             (11, 7, [12, 3.75, 20.5, 40]), (11, 2, [63, 47, 1, 1])]
    annotations = [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3],
                    "iscrowd": 0} for k, (i, c, b) in enumerate(boxes)]
    categories = [{"id": 2, "name": "bird"}, {"id": 0, "name": "cat"}, {"id": 7, "name": "dog"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _write_images(folder: Path):
    for name, size in SIZES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (90, 20, 200)).save(folder / name)
    return folder


def _objects(coco):
    """{file_name: sorted [(class name, x, y, w, h)]} for comparing datasets."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {img["id"]: img["file_name"] for img in coco["images"]}
    out = {f: [] for f in files.values()}
    for a in coco["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], *a["bbox"]))
    return {f: sorted(v) for f, v in out.items()}


def _assert_same_objects(a, b, atol):
    oa, ob = _objects(a), _objects(b)
    assert oa.keys() == ob.keys()
    for name in oa:
        assert [o[0] for o in oa[name]] == [o[0] for o in ob[name]], name
        np.testing.assert_allclose(np.array([o[1:] for o in oa[name]]).reshape(-1, 4),
                                   np.array([o[1:] for o in ob[name]]).reshape(-1, 4),
                                   atol=atol, rtol=0)


def test_coco_voc_coco_preserves_boxes_labels_and_class_order(tmp_path):
    original = _coco_dict()
    write_voc(original, tmp_path / "Annotations")
    xml = (tmp_path / "Annotations" / "a.xml").read_text()
    assert "<xmin>2.25</xmin>" in xml and "<xmax>11.583</xmax>" in xml  # 1-based inclusive
    assert (tmp_path / "Annotations" / "sub" / "b.xml").is_file()
    back = read_voc(tmp_path / "Annotations")
    assert [c["name"] for c in back["categories"]] == ["cat", "bird", "dog"]  # by original id
    _assert_same_objects(original, back, atol=1e-3)
    assert {i["file_name"]: (i["width"], i["height"]) for i in back["images"]} == SIZES


def test_voc_difficult_round_trips_as_crowd(tmp_path):
    original = _coco_dict()
    original["annotations"][0]["iscrowd"] = 1
    write_voc(original, tmp_path / "voc")
    assert "<difficult>1</difficult>" in (tmp_path / "voc" / "a.xml").read_text()
    back = read_voc(tmp_path / "voc")
    assert sorted(a["iscrowd"] for a in back["annotations"]) == [0, 0, 0, 1]


def test_coco_yolo_coco_preserves_boxes_and_labels(tmp_path):
    original = _coco_dict()
    _write_images(tmp_path / "images")
    write_yolo(original, tmp_path)
    assert (tmp_path / "classes.txt").read_text() == "cat\nbird\ndog\n"
    assert (tmp_path / "labels" / "c.txt").read_text() == ""  # image without objects
    first = (tmp_path / "labels" / "a.txt").read_text().splitlines()[0].split()
    assert first[0] == "0" and float(first[1]) == pytest.approx((1.25 + 10.333 / 2) / 40)
    back = read_yolo(tmp_path / "labels", tmp_path / "images")
    _assert_same_objects(original, back, atol=1e-6)


def test_read_voc_without_size_reads_image_header(tmp_path):
    _write_images(tmp_path / "images")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><object><name>cat</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>5</ymax></bndbox>"
        "</object></annotation>")
    data = read_voc(tmp_path / "ann", tmp_path / "images")
    assert (data["images"][0]["width"], data["images"][0]["height"]) == (40, 30)
    assert data["annotations"][0]["bbox"] == [0, 0, 10, 5]


def test_malformed_xml_names_file_and_line(tmp_path):
    (tmp_path / "x.xml").write_text("<annotation>\n<filename>a.png</filename>\n<size>\n</annotation>")
    with pytest.raises(DataError, match=r"x\.xml: malformed XML at line 4"):
        read_voc(tmp_path)


@pytest.mark.parametrize("body, pattern", [
    ("<object><name>cat</name></object>", r"without <bndbox>"),
    ("<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>",
     r"missing <name>"),
    (("<object><name>cat</name><bndbox><xmin>1</xmin><ymin>a</ymin><xmax>5</xmax>"
     "<ymax>5</ymax></bndbox></object>"), r"<ymin> is not a finite number"),
    (("<object><name>cat</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>5</xmax>"
     "<ymax>5</ymax></bndbox></object>"), r"non-positive width"),
])
def test_bad_voc_record_names_the_xml_file(tmp_path, body, pattern):
    (tmp_path / "x.xml").write_text(
        f"<annotation><filename>a.png</filename><size><width>40</width><height>30</height>"
        f"</size>{body}</annotation>")
    with pytest.raises(DataError, match=r"x\.xml: .*" + pattern):
        read_voc(tmp_path)


@pytest.mark.parametrize("text, pattern", [
    ("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n", r"a\.txt: line 2: expected 'cls cx cy w h'"),
    ("0 0.5 0.5 0.2 0.2\n\n7 0.5 0.5 0.2 0.2\n", r"a\.txt: line 3: class 7 not in 0\.\.1"),
    ("0 0.5 zero 0.2 0.2\n", r"a\.txt: line 1: not numbers"),
    ("0 0.5 0.5 1.7 0.2\n", r"a\.txt: line 1: values must be normalised"),
    ("0 0.5 0.5 0 0.2\n", r"a\.txt: .*non-positive width"),
])
def test_malformed_yolo_txt_names_file_and_line(tmp_path, text, pattern):
    _write_images(tmp_path / "images")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text(text)
    with pytest.raises(DataError, match=pattern):
        read_yolo(tmp_path / "labels", tmp_path / "images", ["cat", "dog"])


def test_yolo_label_without_image_is_an_error(tmp_path):
    _write_images(tmp_path / "images")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "zzz.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"zzz\.txt: label file has no matching image"):
        read_yolo(tmp_path / "labels", tmp_path / "images", ["cat"])


def test_yolo_without_class_names_is_an_error(tmp_path):
    _write_images(tmp_path / "images")
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataError, match="classes.txt"):
        read_yolo(tmp_path / "labels", tmp_path / "images")


def test_write_coco_is_atomic_and_read_coco_validates(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text("old")
    write_coco(_coco_dict(), path)
    assert json.loads(path.read_text())["images"][0]["id"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["ann.json"]
    assert len(read_coco(path)["annotations"]) == 4
    bad = _coco_dict()
    bad["annotations"][2]["image_id"] = 99
    write_coco(bad, path)
    with pytest.raises(DataError, match=r"ann\.json: annotation id 3 \(image 99\)"):
        read_coco(path)


def test_convert_chain_gives_self_contained_folders(tmp_path):
    src = write_synth_dataset(tmp_path / "synth", 4, SynthConfig(num_classes=4), progress=False)
    original = read_coco(src)
    voc = convert(src, "coco", tmp_path / "voc", "voc")
    yolo = convert(voc, "voc", tmp_path / "yolo", "yolo")
    coco = convert(yolo, "yolo", tmp_path / "coco", "coco")
    assert (voc / "Annotations" / "000000.xml").is_file() and (voc / "images" / "000003.png").is_file()
    assert (yolo / "labels" / "000000.txt").is_file() and (yolo / "classes.txt").is_file()
    back = read_coco(coco)
    _assert_same_objects(original, back, atol=1e-6)
    ds = CocoDataset(coco)
    assert ds.class_names == SynthConfig(num_classes=4).class_names
    assert ds[0][0].shape == (3, 128, 128)


def test_convert_rejects_unknown_format(tmp_path):
    with pytest.raises(UserError, match=r"'labelme'.*coco, voc, yolo"):
        convert(tmp_path, "coco", tmp_path / "out", "labelme")


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
    _assert_same_objects(original, back, atol=1e-5)
