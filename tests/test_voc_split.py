"""VOC sources honour the official split (issue 11): ``data convert --src VOC_ROOT --split NAME`` reads
``ImageSets/Main/NAME.txt``; checked on the real BCCD dataset (../shared/data/bccd) and on a tiny VOC root."""

import json
from pathlib import Path

import pytest
from PIL import Image

from metaanchor.cli import main
from metaanchor.data.formats import read_voc, voc_split_ids

BCCD = Path(__file__).parents[2] / "shared" / "data" / "bccd"


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


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
    assert code == 2 and "--split train: only VOC sources have splits" in err[0], err
    assert not (tmp_path / "x").exists()
    assert len(read_voc(root / "Annotations")["images"]) == 3  # no split: every XML, as before
