"""Conversion between COCO, VOC and YOLO folders, and how it writes them (atomically, links for images)."""

import errno
import os

import pytest
from conftest import assert_user_error
from data_samples import assert_same_objects

from metaanchor.cli import main
from metaanchor.data import CocoDataset, SynthConfig, read_coco, write_synth_dataset
from metaanchor.data.convert import convert
from metaanchor.errors import UserError


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def test_convert_chain_gives_self_contained_folders(tmp_path):
    src = write_synth_dataset(tmp_path / "synth", 4, SynthConfig(num_classes=4), progress=False)
    original = read_coco(src)
    voc = convert(src, "coco", tmp_path / "voc", "voc")
    yolo = convert(voc, "voc", tmp_path / "yolo", "yolo")
    coco = convert(yolo, "yolo", tmp_path / "coco", "coco")
    assert (voc / "Annotations" / "000000.xml").is_file() and (voc / "images" / "000003.png").is_file()
    assert (yolo / "labels" / "000000.txt").is_file() and (yolo / "classes.txt").is_file()
    back = read_coco(coco)
    assert_same_objects(original, back, atol=1e-6)
    ds = CocoDataset(coco)
    assert ds.class_names == SynthConfig(num_classes=4).class_names
    assert ds[0][0].shape == (3, 128, 128)


def test_convert_rejects_unknown_format(tmp_path):
    with pytest.raises(UserError, match=r"'labelme'.*coco, voc, yolo"):
        convert(tmp_path, "coco", tmp_path / "out", "labelme")


def _tree(root):
    """Relative path -> bytes of every file under ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt, nth, failing", [
    ("coco", 1, "annotations.json"),
    ("voc", 1, "Annotations/classes.txt"),
    ("voc", 2, "Annotations/000000.xml"),
    ("yolo", 1, "classes.txt"),
    ("yolo", 2, "labels/000000.txt"),
])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, capsys, monkeypatch, fmt, nth,
                                                                   failing):
    old = write_synth_dataset(tmp_path / "old", 2, SynthConfig(num_classes=2, seed=0), progress=False)
    new = write_synth_dataset(tmp_path / "new", 2, SynthConfig(num_classes=3, seed=1), progress=False)
    dst = tmp_path / "dst"
    code, _, err = cli(capsys, "data", "convert", "--src", old, "--src-format", "coco", "--dst", dst,
                       "--dst-format", fmt)
    assert code == 0, err
    before = _tree(dst)
    calls = []
    real_fsync = os.fsync

    def disk_full_on_nth(fd):
        calls.append(fd)
        if len(calls) == nth:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_on_nth)
    code, _, err = cli(capsys, "data", "convert", "--src", new, "--src-format", "coco", "--dst", dst,
                       "--dst-format", fmt)
    assert code == 2 and err == [f"metaanchor data: error: cannot write {dst / failing}: No space left on device"]
    after = _tree(dst)
    assert after[failing] == before[failing]  # the old file, whole
    assert not [name for name in after if name.split("/")[-1].startswith(".")]  # no temp file left behind
    monkeypatch.undo()
    code, _, err = cli(capsys, "data", "convert", "--src", new, "--src-format", "coco", "--dst", dst,
                       "--dst-format", fmt)
    assert code == 0, err
    assert _tree(dst)[failing] != before[failing]  # the retry replaces it


def test_images_are_hard_linked_or_else_copied_whole(tmp_path, monkeypatch):
    src = write_synth_dataset(tmp_path / "synth", 2, SynthConfig(num_classes=2), progress=False)
    linked = convert(src, "coco", tmp_path / "linked", "coco")
    assert (linked / "images" / "000001.png").samefile(src / "images" / "000001.png")

    def cross_device(*args, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "link", cross_device)
    copied = convert(src, "coco", tmp_path / "copied", "coco")
    for name in ("000000.png", "000001.png"):
        a, b = src / "images" / name, copied / "images" / name
        assert not b.samefile(a) and b.read_bytes() == a.read_bytes()
        assert (b.stat().st_mode, b.stat().st_mtime_ns) == (a.stat().st_mode, a.stat().st_mtime_ns)
    assert sorted(p.name for p in (copied / "images").iterdir()) == ["000000.png", "000001.png"]


def test_convert_malformed_voc_xml_and_yolo_line(capsys, tmp_path, dataset):
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "x.xml").write_text("<annotation><filename>a.png</filename>")
    assert_user_error(capsys, ["data", "convert", "--src", voc, "--src-format", "voc", "--dst", tmp_path / "o",
                               "--dst-format", "coco", "--images", dataset / "images"],
                      f"{voc / 'Annotations' / 'x.xml'}: malformed XML at line 1")
    yolo = tmp_path / "yolo"
    (yolo / "labels").mkdir(parents=True)
    (yolo / "classes.txt").write_text("a\nb\nc\n")
    first = sorted((dataset / "images").iterdir())[0]
    (yolo / "labels" / f"{first.stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 nan 0.2 0.2\n")
    assert_user_error(capsys, ["data", "convert", "--src", yolo, "--src-format", "yolo", "--dst", tmp_path / "o2",
                               "--dst-format", "coco", "--images", dataset / "images"],
                      f"{first.stem}.txt: line 2: values must be normalised")
