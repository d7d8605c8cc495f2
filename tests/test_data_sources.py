"""Datasets as they come, read in place: a VOC root and an ultralytics data.yaml open as the COCO conversion of
the same split would, every dataset option takes them, and the errors say what was found and the fix.

Checked on a 10-image subset of the real BCCD dataset (../shared/data/bccd, VOC layout) with its own splits.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY, cli
from data_samples import objects

from metaanchor.config import load_config
from metaanchor.data import CocoDataset
from metaanchor.data.convert import convert
from metaanchor.data.loader import load_dataset
from metaanchor.data.sources import open_dataset, read_coco_dict
from metaanchor.errors import DataError, UserError

BCCD = Path(__file__).parents[2] / "shared" / "data" / "bccd"
SUBSET = {"train": 5, "val": 3, "test": 2}  # images of each official split in the subset
pytestmark = pytest.mark.skipif(not (BCCD / "ImageSets" / "Main").is_dir(), reason="BCCD dataset not present")


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """A VOC root of the first BCCD images of its train, val and test splits (no trainval)."""
    root = tmp_path_factory.mktemp("bccd") / "bccd"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for split, n in SUBSET.items():
        ids = (BCCD / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:n]
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for i in ids:
            shutil.copy(BCCD / "Annotations" / f"{i}.xml", root / "Annotations")
            shutil.copy(BCCD / "JPEGImages" / f"{i}.jpg", root / "JPEGImages")
    return root


@pytest.fixture(scope="module")
def coco(voc, tmp_path_factory):
    """The COCO conversion of each split: {split: CocoDataset}."""
    out = tmp_path_factory.mktemp("coco")
    return {s: CocoDataset(convert(voc, "voc", out / s, "coco", split=s)) for s in SUBSET}


@pytest.fixture(scope="module")
def yolo(voc, tmp_path_factory):
    """An ultralytics layout of the subset: images/<split>, labels/<split>, data.yaml (names as {id: name})."""
    root = tmp_path_factory.mktemp("yolo") / "bccd-yolo"
    for split in ("train", "val"):
        one = convert(voc, "voc", root.parent / split, "yolo", split=split)
        for sub in ("images", "labels"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            (one / sub).rename(root / sub / split)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames:\n  0: Platelets\n  1: RBC\n"
                                    "  2: WBC\n")
    return root


def assert_same_dataset(ds: CocoDataset, ref: CocoDataset, atol: float = 1e-6, rounded: bool = False):
    """Same class names, image file names and sizes, and boxes (rounded to whole pixels first if ``rounded``)."""
    assert ds.class_names == ref.class_names
    assert [(i["file_name"], i["width"], i["height"]) for i in ds.images] == \
        [(i["file_name"], i["width"], i["height"]) for i in ref.images]
    got, want = objects(ds.coco.dataset), objects(ref.coco.dataset)
    assert got.keys() == want.keys()
    for name in want:
        assert [o[0] for o in got[name]] == [o[0] for o in want[name]], name
        boxes = np.array([o[1:] for o in got[name]]).reshape(-1, 4)
        np.testing.assert_allclose(np.round(boxes) if rounded else boxes,
                                   np.array([o[1:] for o in want[name]]).reshape(-1, 4), atol=atol, rtol=0)


def test_voc_root_split_opens_as_its_coco_conversion(voc, coco):
    for split in SUBSET:
        ds = open_dataset(voc, split=split)
        assert ds.images_dir == voc / "JPEGImages" and len(ds) == SUBSET[split]
        assert_same_dataset(ds, coco[split])
    image, target = open_dataset(voc, split="val")[1]
    ref_image, ref_target = coco["val"][1]
    assert image.shape == (3, 480, 640) and torch_equal(image, ref_image)
    assert torch_equal(target["boxes"], ref_target["boxes"]) and torch_equal(target["labels"], ref_target["labels"])


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_data_yaml_split_opens_as_the_coco_conversion(yolo, coco):
    for split in ("train", "val"):
        ds = open_dataset(yolo / "data.yaml", split=split)
        assert ds.images_dir == yolo / "images" / split
        assert_same_dataset(ds, coco[split], rounded=True)  # YOLO text: normalised, 10 significant digits
    assert_same_dataset(open_dataset(yolo, split="val"), coco["val"], rounded=True)  # the folder holding it


def test_training_keys_read_voc_splits_and_data_yaml_shorthand_sets_both(voc, yolo, coco, tmp_path):
    cfg = load_config(None, [f"data={yolo / 'data.yaml'}"])
    assert cfg["data"]["train"] == cfg["data"]["val"] == str(yolo / "data.yaml")
    assert_same_dataset(load_dataset(cfg, "train", False), coco["train"], rounded=True)
    assert_same_dataset(load_dataset(cfg, "val", False), coco["val"], rounded=True)
    cfg = load_config(None, [f"data.train={voc}", f"data.val={voc}", "data.val_split=test"])
    assert_same_dataset(load_dataset(cfg, "train", False), coco["train"])
    assert_same_dataset(load_dataset(cfg, "val", False), coco["test"])
    cfg = load_config(None, [f"data={voc}"])  # a VOC root: its train and val splits
    assert_same_dataset(load_dataset(cfg, "val", False), coco["val"])
    config = tmp_path / "run.yaml"
    config.write_text(f"data: {yolo / 'data.yaml'}\nsolver:\n  max_iter: 5\n")  # the shorthand in a config file
    assert load_config(config)["data"]["val"] == str(yolo / "data.yaml")


def test_box_shapes_read_a_voc_split_in_place(voc, coco):
    data, source = read_coco_dict(voc, split="test")
    assert source == voc / "Annotations"
    assert objects(data) == objects(coco["test"].coco.dataset)


def test_voc_root_without_the_split_names_the_splits_found_and_the_option(voc):
    expected = (f"{voc}: a VOC root (Annotations/, JPEGImages/) but no ImageSets/Main/trainval.txt; "
                "splits found: train, val, test; set ")
    with pytest.raises(UserError) as e:
        open_dataset(voc, split="trainval")
    assert str(e.value) == expected + "--split NAME"
    cfg = load_config(None, [f"data.train={voc}", "data.train_split=trainval"])
    with pytest.raises(UserError) as e:
        load_dataset(cfg, "train", False)
    assert str(e.value) == expected + "data.train_split=NAME"


def test_voc_split_error_from_the_command_line_is_one_line(voc, capsys, tmp_path):
    code, _, err = cli(capsys, "anchors", "fit", "--data", voc, "--split", "trainval", "--out", tmp_path / "a.yaml")
    assert code == 2 and err == [f"metaanchor anchors: error: {voc}: a VOC root (Annotations/, JPEGImages/) but no "
                                 "ImageSets/Main/trainval.txt; splits found: train, val, test; set --split NAME"]


def test_yolo_folder_without_data_yaml_says_names_are_needed(yolo, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(yolo, bare)
    (bare / "data.yaml").unlink()
    with pytest.raises(UserError) as e:
        open_dataset(bare)
    assert str(e.value) == (
        f"{bare}: a YOLO folder (images/, labels/) but no data.yaml naming its classes; write {bare / 'data.yaml'} "
        "with the lines 'path: .', 'train: images/train', 'val: images/val', 'names: [NAME0, NAME1, ...]' "
        f"(names in class-id order), or convert it: metaanchor data convert --src {bare} --src-format yolo "
        "--names a,b,c --dst DIR --dst-format coco")


def test_yolo_folder_without_data_yaml_converts_with_names(yolo, coco, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(yolo, bare)
    (bare / "data.yaml").unlink()
    args = ["data", "convert", "--src", bare, "--src-format", "yolo", "--dst-format", "coco"]
    code, _, err = cli(capsys, *args, "--names", "Platelets,RBC,WBC", "--dst", tmp_path / "merged")
    assert code == 2 and "has the splits train, val; convert one at a time with --split NAME" in err[0], err
    names = tmp_path / "names.txt"
    names.write_text("Platelets\nRBC\nWBC\n")
    code, _, err = cli(capsys, *args, "--names", names, "--split", "val", "--dst", tmp_path / "val")
    assert code == 0, err
    assert_same_dataset(CocoDataset(tmp_path / "val"), coco["val"], rounded=True)


def test_convert_reads_a_data_yaml_split_and_writes_a_data_yaml_that_reads_back(yolo, coco, tmp_path, capsys):
    args = ["data", "convert", "--src", yolo / "data.yaml", "--src-format", "yolo"]
    code, _, err = cli(capsys, *args, "--dst", tmp_path / "x", "--dst-format", "coco")
    assert code == 2 and err[0].endswith("has the splits train, val; convert one at a time with --split NAME "
                                         "(they are never merged)"), err
    code, _, err = cli(capsys, *args, "--split", "val", "--dst", tmp_path / "val", "--dst-format", "yolo")
    assert code == 0, err
    written = yaml.safe_load((tmp_path / "val" / "data.yaml").read_text())
    assert written == {"path": ".", "val": "images", "names": {0: "Platelets", 1: "RBC", 2: "WBC"}}
    assert_same_dataset(open_dataset(tmp_path / "val" / "data.yaml", split="val"), coco["val"], rounded=True)


def test_every_source_is_validated_alike(voc, tmp_path):
    bad = tmp_path / "voc"
    shutil.copytree(voc, bad)
    xml = sorted((bad / "Annotations").glob("*.xml"))[0]
    xml.write_text(xml.read_text().replace("<xmax>", "<xmax>9", 1))  # a box far outside the 640 px image
    split = next(s for s in SUBSET if xml.stem in (bad / "ImageSets" / "Main" / f"{s}.txt").read_text())
    with pytest.raises(DataError, match=rf"{xml.name}: annotation id 1 .* lies outside the 640x480 image"):
        open_dataset(bad, split=split)
    ds = open_dataset(bad, split=split, skip_invalid=True)
    assert sum(ds.skipped.values()) == 1


def test_a_coco_source_has_no_splits_and_a_json_finds_images_beside_it(coco, tmp_path):
    folder = coco["val"].ann_file.parent
    with pytest.raises(UserError, match="--split test: .* is a COCO dataset, which has no splits"):
        open_dataset(folder, split="test")
    assert_same_dataset(open_dataset(folder / "annotations.json"), coco["val"])


def test_anchor_search_where_every_set_scores_zero_warns(voc, model_ckpt, tmp_path, capsys, monkeypatch):
    import metaanchor.engine.evaluate

    monkeypatch.setattr(metaanchor.engine.evaluate, "evaluate", lambda *a, **k: {"AP": 0.0})
    out = tmp_path / "best.yaml"
    code, _, err = cli(capsys, "anchors", "search", "--checkpoint", model_ckpt, "--data", voc, "--device", "cpu",
                       "--budget", "2", "--start", "1x1", "--out", out)
    assert code == 0, err
    warning = [e for e in err if "scored AP 0.0" in e]
    assert len(warning) == 1 and warning[0].startswith(f"warning: every anchor set tried scored AP 0.0 on {voc}: "
                                                       "none is better than another"), err


def test_anchors_fit_caps_the_long_side_as_training_does(voc, tmp_path, capsys):
    args = ["anchors", "fit", "--data", voc, "-k", "2", "--input-size", "240"]
    code, out, err = cli(capsys, *args, "--out", tmp_path / "a.yaml")
    assert code == 0, err
    assert "boxes from" in out and "(images resized to short side 240, long side <= 240)" in out
    code, out, err = cli(capsys, *args, "--input-max-size", "1000", "--out", tmp_path / "b.yaml")
    assert code == 0, err
    assert "(images resized to short side 240, long side <= 1000)" in out


def test_train_straight_from_a_voc_root_then_eval_its_split(voc, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--no-progress", "--out", run, f"data.train={voc}", f"data.val={voc}",
                       *TINY, "solver.max_iter=2", "eval.score_thresh=0.0")
    assert code == 0, err
    assert (run / "last.pt").is_file()
    code, out, err = cli(capsys, "eval", "--checkpoint", run / "last.pt", "--data", voc, "--split", "test",
                         "--device", "cpu")
    assert code == 0, err
    assert "Platelets" in out and "WBC" in out  # the per-class table of the VOC classes


def test_data_yaml_root_from_path_key_names_as_list_and_an_image_list(yolo, coco, tmp_path):
    elsewhere = tmp_path / "other.yaml"
    elsewhere.write_text(f"path: {yolo}\ntrain: images/train\nval: images/val\nnames: [Platelets, RBC, WBC]\n")
    assert_same_dataset(open_dataset(elsewhere, split="val"), coco["val"], rounded=True)
    copy = tmp_path / "copy"
    shutil.copytree(yolo, copy)
    listed = copy / "listed.yaml"  # no path: the dataset root is the YAML's folder
    listed.write_text("train: train.txt\nval: val.txt\nnames: [Platelets, RBC, WBC]\n")
    names = [i["file_name"] for i in coco["val"].images]
    (copy / "val.txt").write_text("".join(f"./images/val/{n}\n" for n in names))
    ds = open_dataset(listed, split="val")
    assert ds.images_dir == copy and [i["file_name"] for i in ds.images] == [f"images/val/{n}" for n in names]
    assert [[o[1:] for o in v] for v in objects(ds.coco.dataset).values()] == \
        [[o[1:] for o in v] for v in objects(open_dataset(copy / "data.yaml", split="val").coco.dataset).values()]
    (copy / "train.txt").write_text("../outside.jpg\n")
    with pytest.raises(DataError, match=r"train\.txt: line 1: file_name '\.\./outside\.jpg' goes up with '\.\.'"):
        open_dataset(listed)
    with pytest.raises(DataError, match=r"no 'test' entry; entries found: train, val; set data.val_split=NAME"):
        load_dataset(load_config(None, [f"data={listed}", "data.val_split=test"]), "val", False)


def test_voc_root_without_image_sets_is_one_split(voc, tmp_path):
    bare = tmp_path / "voc"
    shutil.copytree(voc, bare, ignore=shutil.ignore_patterns("ImageSets"))
    assert len(open_dataset(bare)) == sum(SUBSET.values())
    with pytest.raises(UserError) as e:
        open_dataset(bare, split="val")
    assert str(e.value) == (f"--split val: {bare} is a VOC root without ImageSets/Main, so all its annotations are "
                            "one split; leave --split unset")
