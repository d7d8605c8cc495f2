"""Pascal VOC: reading and writing XML annotations, and the official splits (``ImageSets/Main/NAME.txt``).

The splits are checked on the real BCCD dataset (../shared/data/bccd) when present, and on a tiny VOC root.
"""

import json
import tempfile
from pathlib import Path

import pytest
from data_samples import SIZES, _coco_folder, assert_same_objects, coco_sample, write_sample_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from metaanchor.cli import main
from metaanchor.data.coco import CocoDataset
from metaanchor.data.loader import AugmentedDataset
from metaanchor.data.voc import read_voc, voc_split_ids, write_voc
from metaanchor.errors import DataError, UserError

BCCD = Path(__file__).parents[2] / "shared" / "data" / "bccd"


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def test_coco_voc_coco_preserves_boxes_labels_and_class_order(tmp_path):
    original = coco_sample()
    write_voc(original, tmp_path / "Annotations")
    xml = (tmp_path / "Annotations" / "a.xml").read_text()
    assert "<xmin>2.25</xmin>" in xml and "<xmax>11.583</xmax>" in xml  # 1-based inclusive
    assert (tmp_path / "Annotations" / "sub" / "b.xml").is_file()
    back = read_voc(tmp_path / "Annotations")
    assert [c["name"] for c in back["categories"]] == ["cat", "bird", "dog"]  # by original id
    assert_same_objects(original, back, atol=1e-3)
    assert {i["file_name"]: (i["width"], i["height"]) for i in back["images"]} == SIZES


def test_voc_difficult_round_trips_as_crowd(tmp_path):
    original = coco_sample()
    original["annotations"][0]["iscrowd"] = 1
    write_voc(original, tmp_path / "voc")
    assert "<difficult>1</difficult>" in (tmp_path / "voc" / "a.xml").read_text()
    back = read_voc(tmp_path / "voc")
    assert sorted(a["iscrowd"] for a in back["annotations"]) == [0, 0, 0, 1]


def test_read_voc_without_size_reads_image_header(tmp_path):
    write_sample_images(tmp_path / "images")
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


@pytest.mark.skipif(not (BCCD / "ImageSets" / "Main").is_dir(), reason="BCCD dataset not present")
def test_bccd_official_splits(tmp_path, capsys):
    seen = {}
    for split, count in (("train", 205), ("val", 87), ("test", 72)):
        dst = tmp_path / split
        code, out, err = cli(capsys, "data", "convert", "--src", BCCD, "--src-format", "voc", "--split", split,
                             "--dst", dst, "--dst-format", "coco")
        assert code == 0, err
        assert f"split {split}" in out
        data = json.loads((dst / "annotations.json").read_text())
        names = [img["file_name"] for img in data["images"]]
        assert len(names) == count == len(set(names))
        wanted = (BCCD / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert sorted(Path(n).stem for n in names) == sorted(wanted)
        assert len(list((dst / "images").iterdir())) == count
        # every split gets the same categories, even one where a class happens to be missing
        assert [c["name"] for c in data["categories"]] == ["Platelets", "RBC", "WBC"]
        seen[split] = set(names)
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"])
    assert not (seen["val"] & seen["test"])


@pytest.mark.skipif(not (BCCD / "ImageSets" / "Main").is_dir(), reason="BCCD dataset not present")
def test_bccd_unknown_split_lists_the_available_ones(tmp_path, capsys):
    code, _, err = cli(capsys, "data", "convert", "--src", BCCD, "--src-format", "voc", "--split", "trian",
                       "--dst", tmp_path / "d", "--dst-format", "coco")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("metaanchor data: error: --split trian: no ")
    assert err[0].endswith("; available: test, train, trainval, val"), err
    assert not (tmp_path / "d").exists()
    assert len(voc_split_ids(BCCD, "trainval")) == 292


def _tiny_voc(root: Path, names: list[str]) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for k, name in enumerate(names):
        Image.new("RGB", (8, 6)).save(root / "JPEGImages" / f"{name}.png")
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><size><width>8</width><height>6</height></size>"
            f"<object><name>{'cat' if k else 'dog'}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax>"
            "<ymax>3</ymax></bndbox></object></annotation>")
    return root


def test_split_on_a_tiny_voc_root(tmp_path, capsys):
    root = _tiny_voc(tmp_path / "voc", ["a", "b", "c"])
    main_dir = root / "ImageSets" / "Main"
    (main_dir / "train.txt").write_text("c\n\na\n")
    (main_dir / "dog_train.txt").write_text("a  1\nc -1\n")  # VOC per-class file: not offered as a split
    (main_dir / "evil.txt").write_text("../../escape\n")
    code, _, err = cli(capsys, "data", "convert", "--src", root, "--src-format", "voc", "--split", "train",
                       "--dst", tmp_path / "t", "--dst-format", "coco")
    assert code == 0, err
    data = json.loads((tmp_path / "t" / "annotations.json").read_text())
    assert [i["file_name"] for i in data["images"]] == ["c.png", "a.png"]
    assert [c["name"] for c in data["categories"]] == ["cat", "dog"]  # from every XML, not only the split's
    # the Annotations folder itself works as --src too
    code, _, err = cli(capsys, "data", "convert", "--src", root / "Annotations", "--src-format", "voc",
                       "--images", root / "JPEGImages", "--split", "train", "--dst", tmp_path / "t2",
                       "--dst-format", "yolo")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "t2" / "labels").iterdir()) == ["a.txt", "c.txt"]
    # hostile and wrong split names / ids: one line, exit 2
    cases = [
        (["--split", "nope"], "--split nope: no ", "; available: evil, train"),
        (["--split", "../../../etc/passwd"], "--split: file_name '../../../etc/passwd.txt' goes up with '..'", ""),
        (["--split", "evil"], "image id '../../escape': file_name '../../escape.xml' goes up with '..'", ""),
    ]
    for extra, start, end in cases:
        code, _, err = cli(capsys, "data", "convert", "--src", root, "--src-format", "voc", *extra,
                           "--dst", tmp_path / "x", "--dst-format", "coco")
        assert code == 2 and len(err) == 1 and start in err[0] and err[0].endswith(end), err
    (main_dir / "gap.txt").write_text("a\nmissing\n")
    code, _, err = cli(capsys, "data", "convert", "--src", root, "--src-format", "voc", "--split", "gap",
                       "--dst", tmp_path / "x", "--dst-format", "coco")
    assert code == 2 and "image id 'missing' of the split has no annotation file" in err[0], err
    code, _, err = cli(capsys, "data", "convert", "--src", root, "--src-format", "coco", "--split", "train",
                       "--dst", tmp_path / "x", "--dst-format", "coco")
    assert code == 2 and "--split train: only VOC and YOLO sources have splits" in err[0], err
    assert not (tmp_path / "x").exists()
    assert len(read_voc(root / "Annotations")["images"]) == 3  # no split: every XML, as before


TAGS = st.sampled_from(["annotation", "filename", "size", "width", "height", "object", "name", "bndbox", "xmin",
                        "ymin", "xmax", "ymax", "difficult"])


XML_TEXT = st.sampled_from(["", "a.png", "cat", "0", "1", "5", "40", "-3", "nan", "1e999", "x", "2.5"])


XML_NODE = st.recursive(st.tuples(TAGS, XML_TEXT, st.just([])),
                        lambda kids: st.tuples(TAGS, XML_TEXT, st.lists(kids, max_size=4)), max_leaves=12)


def _xml(node) -> str:
    tag, text, kids = node
    return f"<{tag}>{text}{''.join(_xml(k) for k in kids)}</{tag}>"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(XML_NODE, st.booleans())
def test_fuzzed_voc_xml_parses_or_raises_data_error(node, truncate):
    text = _xml(("annotation", "", [node]))
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "x.xml").write_text(text[: len(text) // 2] if truncate else text)
        try:
            data = read_voc(d)
        except UserError as e:
            assert "x.xml" in str(e) or d in str(e)
        else:
            assert all(a["bbox"][2] > 0 and a["bbox"][3] > 0 for a in data["annotations"])


def test_bccd_style_point_box_becomes_one_pixel_and_is_dropped_below_one_pixel(tmp_path):
    """VOC xmin == xmax (BCCD has two) converts to a 1 x 1 px box; downscaled below 1 px, a preset drops it."""
    from metaanchor.data.voc import read_voc

    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>40</width><height>30</height></size>"
        "<object><name>RBC</name><bndbox><xmin>7</xmin><ymin>9</ymin><xmax>7</xmax><ymax>9</ymax></bndbox></object>"
        "<object><name>RBC</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox>"
        "</object></annotation>")
    data = read_voc(tmp_path / "Annotations")
    assert [a["bbox"] for a in data["annotations"]] == [[6, 8, 1, 1], [0, 0, 20, 20]]
    folder = _coco_folder(tmp_path / "ds", {"a.png": (Image.new("RGB", (40, 30)), (40, 30))},
                          {"a.png": [a["bbox"] for a in data["annotations"]]})
    _, target = AugmentedDataset(CocoDataset(folder), 0, 0.0, 0.0, augment="none", size=(15, 20))[(0, 0)]
    assert target["boxes"].tolist() == [[0.0, 0.0, 10.0, 10.0]] and target["labels"].tolist() == [0]
