"""Hostile dataset inputs: paths that leave their folder, decompression bombs, sizes without bounds,
one image file under two ids. Every case is a clean user error (exit 2, one line naming the culprit) or, where
asked for, a counted skip; nothing outside ``--dst`` is ever touched.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from metaanchor.cli import main
from metaanchor.config import load_config
from metaanchor.data import CocoDataset, convert
from metaanchor.data.io import image_size, load_image, read_rgb_array
from metaanchor.errors import AnchorSpecError, ConfigError, DataError, UserError
from metaanchor.geometry.anchors import AnchorSet


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def _png(path: Path, size=(8, 6), colour=(10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _digest(root: Path, exclude: Path) -> dict[str, str]:
    """Path -> content hash (or link target) of everything under ``root`` except ``exclude``."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p == exclude or exclude in p.parents:
            continue
        if p.is_symlink():
            out[str(p)] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p)] = "dir"
    return out


@pytest.fixture
def world(tmp_path):
    """tmp/src (COCO dataset: good.png + escaping symlinks), decoy trees at tmp/decoy and tmp/out/decoy."""
    for decoy in (tmp_path / "decoy", tmp_path / "out" / "decoy"):
        _png(decoy / "victim.png", colour=(200, 0, 0))
        (decoy / "victim.txt").write_text("precious text\n")
        (decoy / "victim.xml").write_text("<precious/>\n")
        (decoy / "labels").mkdir()
        (decoy / "labels" / "victim.txt").write_text("precious label\n")
    images = tmp_path / "src" / "images"
    _png(images / "good.png")
    (images / "link.png").symlink_to(tmp_path / "decoy" / "victim.png")
    (images / "sub").symlink_to(tmp_path / "decoy", target_is_directory=True)
    return tmp_path


def _write_coco(src: Path, names: list[tuple[int, str]]) -> Path:
    images = [{"id": i, "file_name": n, "width": 8, "height": 6} for i, n in names]
    anns = [{"id": k + 1, "image_id": i, "category_id": 1, "bbox": [1, 1, 3, 3]} for k, (i, _) in enumerate(names)]
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    (src / "annotations.json").write_text(json.dumps(data))
    return src


def _hostile_names(world: Path) -> list[str]:
    return [
        str(world / "decoy" / "victim.png"),  # absolute
        "../../decoy/victim.png",  # '..' up to tmp/decoy (and tmp/out/decoy from tmp/out/dst/images)
        "./../decoy/victim.png",
        "good.png/../../../decoy/victim.png",
        "link.png",  # file symlink leaving the images folder
        "sub/victim.png",  # folder symlink leaving the images folder
        "a\x00b.png",  # NUL byte
        ".",  # not a file
        "..\\..\\decoy\\victim.png",  # Windows-style '..'
    ]


HOSTILE_IDS = ["absolute", "dotdot", "dot-dotdot", "file-dotdot", "file-symlink", "dir-symlink", "nul", "dot",
               "backslash-dotdot"]


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
@pytest.mark.parametrize("k", range(9), ids=HOSTILE_IDS)
def test_convert_never_touches_files_outside_dst(world, capsys, fmt, k):
    name = _hostile_names(world)[k]
    src = _write_coco(world / "src", [(1, "good.png"), (7, name)])
    dst = world / "out" / "dst"
    before = _digest(world, dst)
    code, _, err = cli(capsys, "data", "convert", "--src", src, "--src-format", "coco", "--dst", dst,
                       "--dst-format", fmt)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("metaanchor data: error: "), err
    assert "image id 7" in err[0] and repr(name) in err[0], err[0]
    assert _digest(world, dst) == before


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_convert_skip_invalid_counts_hostile_records(world, capsys, fmt):
    names = _hostile_names(world)
    src = _write_coco(world / "src", [(1, "good.png")] + [(10 + k, n) for k, n in enumerate(names)])
    dst = world / "out" / "dst"
    before = _digest(world, dst)
    code, out, err = cli(capsys, "data", "convert", "--src", src, "--src-format", "coco", "--dst", dst,
                         "--dst-format", fmt, "--skip-invalid")
    assert code == 0, err
    assert f"skipped {len(names)} image(s) (unsafe_file_name: {len(names)})" in out, out
    assert _digest(world, dst) == before
    assert sorted(p.name for p in (dst / "images").rglob("*")) == ["good.png"]


def test_dataset_rejects_or_skips_hostile_paths(world):
    names = _hostile_names(world)
    src = _write_coco(world / "src", [(1, "good.png")] + [(10 + k, n) for k, n in enumerate(names)])
    with pytest.raises(DataError, match=r"image id 10: file_name .* is an absolute path"):
        CocoDataset(src)
    ds = CocoDataset(src, skip_invalid=True)
    assert len(ds) == 1 and ds.skipped["unsafe_file_name"] == len(names)
    assert ds.skipped["annotation_of_skipped_image"] == len(names)
    assert ds[0][0].shape == (3, 6, 8)


def test_dataset_read_time_check_catches_symlink_made_after_loading(world):
    src = _write_coco(world / "src", [(1, "good.png"), (2, "later.png")])
    _png(world / "src" / "images" / "later.png")
    ds = CocoDataset(src)
    (world / "src" / "images" / "later.png").unlink()
    (world / "src" / "images" / "later.png").symlink_to(world / "decoy" / "victim.png")
    with pytest.raises(DataError, match=r"image id 2: file_name 'later.png' resolves to .*victim.png, outside"):
        ds[1]


def test_voc_and_yolo_writers_refuse_paths_outside_their_folder(tmp_path):
    from metaanchor.data import write_voc, write_yolo

    _png(tmp_path / "decoy" / "x.png")
    data = {"images": [{"id": 3, "file_name": "../decoy/x.png", "width": 8, "height": 6}], "annotations": [],
            "categories": [{"id": 1, "name": "a"}]}
    with pytest.raises(DataError, match=r"image id 3: file_name '../decoy/x.png' goes up with '..'"):
        write_voc(data, tmp_path / "out" / "Annotations")
    with pytest.raises(DataError, match=r"image id 3: file_name '../decoy/x.png' goes up with '..'"):
        write_yolo(data, tmp_path / "out")
    assert not (tmp_path / "decoy" / "x.xml").exists() and not (tmp_path / "decoy" / "x.txt").exists()


def test_voc_source_with_hostile_filename_is_an_error(world, capsys):
    ann = world / "voc" / "Annotations"
    ann.mkdir(parents=True)
    _png(world / "voc" / "JPEGImages" / "a.png")
    (ann / "a.xml").write_text("<annotation><filename>../../decoy/victim.png</filename><size><width>8</width>"
                               "<height>6</height></size><object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                               "<xmax>3</xmax><ymax>3</ymax></bndbox></object></annotation>")
    dst = world / "out" / "dst"
    before = _digest(world, dst)
    code, _, err = cli(capsys, "data", "convert", "--src", world / "voc", "--src-format", "voc", "--dst", dst,
                       "--dst-format", "yolo")
    assert code == 2 and "'../../decoy/victim.png' goes up with '..'" in err[0], err
    assert _digest(world, dst) == before


# ----------------------------------------------------------------------------- decompression bombs


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A 10000 x 10000 1-bit PNG: a few KB on disk, 100 MP (300 MB as RGB) once decoded."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (10000, 10000)).save(path)
    assert path.stat().st_size < 100_000
    return path


def test_bomb_is_rejected_from_the_header_without_decoding(bomb, monkeypatch):
    def no_decode(self, *a, **k):
        raise AssertionError("image was decoded")

    monkeypatch.setattr(Image.Image, "load", no_decode)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(DataError) as e:  # no_decode proves the header alone was read
        load_image(bomb)
    msg = str(e.value)
    assert msg == (f"{bomb}: image is 10000x10000 (100.0 MP), above the 50.0 MP limit; raise it with "
                   "data.max_image_pixels=N (train) or the environment variable METAANCHOR_MAX_IMAGE_PIXELS=N")
    with pytest.raises(DataError, match="above the 50.0 MP limit"):
        read_rgb_array(bomb)
    assert image_size(bomb) == (10000, 10000)  # the header alone is fine


def test_bomb_in_predict_is_a_skip_or_with_fail_fast_an_error(bomb, tmp_path, capsys):
    from conftest import tiny_detector

    path = tmp_path / "m.pt"
    tiny_detector(class_names=["a", "b", "c"]).save(path)
    code, _, err = cli(capsys, "predict", "--checkpoint", path, "--out", tmp_path / "p", "--fail-fast",
                       "--device", "cpu", bomb)
    assert code == 2 and "above the 50.0 MP limit" in err[-1] and str(bomb) in err[-1], err


def test_pixel_cap_can_be_raised(tmp_path, monkeypatch):
    path = _png(tmp_path / "a.png", size=(100, 60))
    with pytest.raises(DataError, match=r"image is 100x60 \(0.0 MP\), above the 0.0 MP limit"):
        read_rgb_array(path, max_pixels=5999)
    assert read_rgb_array(path, max_pixels=6000).shape == (60, 100, 3)
    monkeypatch.setenv("METAANCHOR_MAX_IMAGE_PIXELS", "5000")
    with pytest.raises(DataError, match="above the"):
        load_image(path)
    monkeypatch.setenv("METAANCHOR_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(UserError, match="METAANCHOR_MAX_IMAGE_PIXELS='lots': must be an integer in 1..1000000000"):
        load_image(path)


def test_dataset_uses_the_configured_cap(world):
    src = _write_coco(world / "src", [(1, "good.png")])
    with pytest.raises(DataError, match=r"good.png: image is 8x6 .* above the"):
        CocoDataset(src, max_image_pixels=47)[0]
    assert CocoDataset(src, max_image_pixels=48)[0][0].shape == (3, 6, 8)
    assert load_config(None, ["data.max_image_pixels=1000"])["data"]["max_image_pixels"] == 1000


# ----------------------------------------------------------------------------- size bounds


@pytest.mark.parametrize("override, message", [
    ("solver.max_iter=100000000000000000000000",
     "config key solver.max_iter: 100000000000000000000000 is out of range; allowed: > 0 and <= 100000000"),
    ("solver.batch_size=100000", "config key solver.batch_size: 100000 is out of range; allowed: > 0 and <= 1024"),
    ("eval.batch_size=5000", "config key eval.batch_size: 5000 is out of range; allowed: > 0 and <= 1024"),
    ("input.size=100000", "config key input.size: 100000 is out of range; allowed: > 0 and <= 4096"),
    ("input.max_size=100000", "config key input.max_size: 100000 is out of range; allowed: in 0..8192"),
    ("solver.warmup_iters=1000000000", "config key solver.warmup_iters: 1000000000 is out of range; "
                                      "allowed: in 0..100000000"),
    ("model.fpn_channels=1000000", "config key model.fpn_channels: 1000000 is out of range; allowed: > 0 and <= 4096"),
    ("model.hidden_dim=1000000", "config key model.hidden_dim: 1000000 is out of range; allowed: > 0 and <= 4096"),
    ("model.head_convs=1000", "config key model.head_convs: 1000 is out of range; allowed: in 0..16"),
    ("data.workers=100000", "config key data.workers: 100000 is out of range; allowed: in 0..256"),
    ("data.max_image_pixels=100000000000", "config key data.max_image_pixels: 100000000000 is out of range; "
                                           "allowed: > 0 and <= 1000000000"),
    ("seed=100000000000000000000", "config key seed: 100000000000000000000 is out of range; "
                                   "allowed: in 0..4294967295"),
    ("log.period=1000000000", "config key log.period: 1000000000 is out of range; allowed: > 0 and <= 100000000"),
])
def test_config_sizes_have_upper_bounds(tmp_path, capsys, override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == message
    code, _, err = cli(capsys, "train", "--out", tmp_path / "run", override)
    assert code == 2 and err == [f"metaanchor train: error: {message}"], err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--distribution", "image_size=100000"], "synthetic dataset config: image_size must be in 16..4096, got 100000"),
    (["--distribution", "max_objects=1000000"],
     "synthetic dataset config: need 1 <= min_objects <= max_objects <= 100, got 1, 1000000"),
    (["--distribution", "num_classes=100000"], "synthetic dataset config: num_classes must be in 1..8, got 100000"),
    (["--seed", "-1"], "synthetic dataset config: seed must be in 0..4294967295, got -1"),
    (["--images", "100000000"], "--images 100000000: must be in 1..1000000"),
    (["--images", "0"], "--images 0: must be in 1..1000000"),
])
def test_synth_sizes_have_upper_bounds(tmp_path, capsys, args, message):
    code, _, err = cli(capsys, "data", "synth", "--out", tmp_path / "s", *args)
    assert code == 2 and err == [f"metaanchor data: error: {message}"], err
    assert not (tmp_path / "s").exists()


def _anchor_file(tmp_path: Path, name: str, data) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_anchor_sets_are_bounded_in_every_spec_form(tmp_path, capsys):
    many = ",".join(str(1 + k / 100) for k in range(100))
    cases = [
        ("16x16", "anchor SPEC '16x16': 16 scales x 16 ratios = 256 anchors per position; at most 64"),
        ("9x8", "anchor SPEC '9x8': 9 scales x 8 ratios = 72 anchors per position; at most 64"),
        (f"scales={many};ratios={many}",
         f"anchor SPEC 'scales={many};ratios={many}': 100 scales x 100 ratios = 10000 anchors per position; "
         "at most 64"),
        (f"scales={many}", f"anchor SPEC 'scales={many}': 100 scales x 1 ratios = 100 anchors per position; "
                           "at most 64"),
    ]
    path = _anchor_file(tmp_path, "many.json", {"anchors": [[1, 1]] * 10000})
    cases.append((path, f"anchor file {path}: anchors: 10000 anchors per position; at most 64"))
    path = _anchor_file(tmp_path, "levels.json", {"levels": [[[32, 32]], [[64, 64]] * 65]})
    cases.append((path, f"anchor file {path}: level 1: 65 anchors per position; at most 64"))
    path = _anchor_file(tmp_path, "deep.json", {"levels": [[[32, 32]]] * 1000})
    cases.append((path, f"anchor file {path}: 1000 levels; at most 16"))
    big = tmp_path / "big.yaml"
    big.write_text("anchors:\n" + "  - [1, 1]\n" * 200_000)
    cases.append((str(big), f"anchor file {big}: {big.stat().st_size} bytes, more than 1000000 "
                                    "(a limit against memory exhaustion)"))
    for spec, message in cases:
        with pytest.raises(AnchorSpecError) as e:
            AnchorSet.parse(spec)
        assert str(e.value) == message
        code, _, err = cli(capsys, "anchors", "show", spec, "--out", tmp_path / "a.png")
        assert code == 2 and err == [f"metaanchor anchors: error: {message}"], err
    with pytest.raises(AnchorSpecError, match="anchor shapes: 65 anchors per position; at most 64"):
        AnchorSet(shapes=[(1.0, 1.0)] * 65)
    with pytest.raises(AnchorSpecError, match="anchor levels: 17 levels; at most 16"):
        AnchorSet(per_level=[[(32.0, 32.0)]] * 17)
    assert len(AnchorSet.parse("8x8")) == 64  # the largest allowed still works
    with pytest.raises(ConfigError, match="config key anchors.train: anchor SPEC '16x16': .* at most 64"):
        load_config(None, ["anchors.train=16x16"])


# ----------------------------------------------------------------------------- one file, two image ids


def test_same_file_under_two_image_ids_warns_or_fails_fast(world, capsys, caplog):
    src = _write_coco(world / "src", [(1, "good.png"), (7, "./good.png"), (9, "good.png")])
    with caplog.at_level(logging.WARNING):
        ds = CocoDataset(src)
    assert len(ds) == 3
    text = caplog.text
    assert "image ids 1 and 7 use the same file 'good.png'" in text, text
    assert "image ids 1 and 9 use the same file 'good.png'" in text, text
    with pytest.raises(DataError, match=r"image ids 1 and 7 use the same file 'good.png'"):
        CocoDataset(src, fail_fast=True)
    code, _, err = cli(capsys, "data", "convert", "--src", src, "--src-format", "coco", "--dst",
                       world / "out" / "dst", "--dst-format", "coco", "--fail-fast")
    assert code == 2 and "image ids 1 and 7 use the same file 'good.png'" in err[0], err
    code, _, err = cli(capsys, "data", "convert", "--src", src, "--src-format", "coco", "--dst",
                       world / "out" / "dst2", "--dst-format", "coco")
    assert code == 0, err


def test_train_passes_fail_fast_to_the_dataset(world):
    from metaanchor.data.loader import load_dataset

    src = _write_coco(world / "src", [(1, "good.png"), (2, "good.png")])
    cfg = load_config(None, [f"data.train={src}"])
    assert len(load_dataset(cfg, "train", False)) == 2
    with pytest.raises(DataError, match="image ids 1 and 2 use the same file"):
        load_dataset(cfg, "train", False, fail_fast=True)


def test_convert_api_reports_skips(world):
    src = _write_coco(world / "src", [(1, "good.png"), (2, "/etc/passwd")])
    skipped: dict = {}
    convert(src, "coco", world / "out" / "dst", "coco", skip_invalid=True, skipped=skipped)
    assert skipped == {"unsafe_file_name": 1, "annotation_of_skipped_image": 1}


def test_eval_fail_fast_refuses_one_file_under_two_image_ids(world, capsys):
    from conftest import tiny_detector

    src = _write_coco(world / "src", [(1, "good.png"), (2, "good.png")])
    ckpt = world / "model.pt"
    tiny_detector(num_classes=1).save(ckpt)
    code, _, err = cli(capsys, "eval", "--checkpoint", ckpt, "--data", src, "--fail-fast", "--device", "cpu")
    assert code == 2 and "image ids 1 and 2 use the same file 'good.png'" in err[0], err
