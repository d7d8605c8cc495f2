"""`metaanchor predict` end to end (in-process): ids and numbering in detections.json, inputs never
overwritten, bad images skipped, write failures as one-line errors (exit 2) without partial files."""

import errno
import hashlib
import json
import os
import shutil
import tempfile

import pytest
from conftest import CAT_IDS, assert_user_error, cli
from data_samples import _odd_images
from PIL import Image

from metaanchor.cli import main


def predict(capsys, ckpt, out, *inputs):
    return cli(capsys, "predict", "--checkpoint", ckpt, "--device", "cpu", "--score-thresh", 0, "--out", out,
               *inputs)


def test_predict_writes_the_checkpoints_category_ids_and_file_numbering(capsys, tmp_path, odd_ckpt,
                                                                        odd_ids_dataset):
    imgs = sorted((odd_ids_dataset / "images").iterdir())[:2]
    out = tmp_path / "pred"
    code, stdout, err = predict(capsys, odd_ckpt, out, *imgs)
    assert code == 0, err
    dets = json.loads((out / "detections.json").read_text())
    assert dets and {d["category_id"] for d in dets} <= set(CAT_IDS)
    assert len({d["category_id"] for d in dets}) > 1
    names = dict(zip(CAT_IDS, ["circle", "square", "triangle"]))
    assert all(d["category"] == names[d["category_id"]] for d in dets)
    # loose files: 1-based image ids in input order, with the file name beside them
    assert {(d["image_id"], d["file_name"]) for d in dets} <= {(1, str(imgs[0])), (2, str(imgs[1]))}
    assert {d["image_id"] for d in dets} == {1, 2}


def test_predict_help_documents_the_numbering(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "image_id" in text and "1-based" in text and "category" in text


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_predict_into_the_input_folder_leaves_inputs_untouched(capsys, tmp_path, odd_ckpt, odd_ids_dataset):
    folder = tmp_path / "imgs"
    shutil.copytree(odd_ids_dataset / "images", folder)
    before = _hashes(folder)
    code, stdout, err = predict(capsys, odd_ckpt, folder, folder)
    assert code == 0, err
    after = _hashes(folder)
    assert {k: after[k] for k in before} == before
    drawings = sorted(set(after) - set(before) - {"detections.json"})
    assert len(drawings) == len(before)
    for name in drawings:
        assert str(folder / name) in stdout  # what was written is printed
    # a second run into the same folder must not take the first run's drawings as inputs to overwrite either
    code, _, err = predict(capsys, odd_ckpt, folder, *[folder / n for n in before])
    assert code == 0, err
    assert {k: _hashes(folder)[k] for k in before} == before


def test_same_stem_inputs_get_distinct_drawings(capsys, tmp_path, odd_ckpt):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "a" / "x.jpg")
    Image.new("RGB", (64, 48), (10, 200, 10)).save(tmp_path / "b" / "x.png")
    out = tmp_path / "pred"
    code, stdout, err = predict(capsys, odd_ckpt, out, tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.png")
    assert code == 0, err
    drawings = sorted(out.glob("*.png"))
    assert len(drawings) == 2
    assert sorted(Image.open(p).size for p in drawings) == [(64, 48), (64, 64)]
    for p in drawings:
        assert str(p) in stdout


def test_predict_out_naming_a_file_is_a_user_error(capsys, tmp_path, odd_ckpt, odd_ids_dataset):
    target = tmp_path / "taken"
    target.write_text("keep me")
    img = next((odd_ids_dataset / "images").iterdir())
    code, _, err = predict(capsys, odd_ckpt, target, img)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("metaanchor predict: error: ") and str(target) in err[0] and "not a folder" in err[0]
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("code_, word", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EROFS, "Read-only file system")])
def test_predict_write_failure_is_exit_2_without_partial_files(capsys, tmp_path, monkeypatch, odd_ckpt,
                                                              odd_ids_dataset, code_, word):
    """Running as root, chmod 0o555 does not stop writes, so the OS error is simulated where data is flushed."""
    out = tmp_path / "pred"
    out.mkdir()
    real_fsync = os.fsync

    def failing_fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(out)):
            raise OSError(code_, os.strerror(code_))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    img = next((odd_ids_dataset / "images").iterdir())
    code, _, err = predict(capsys, odd_ckpt, out, img)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("metaanchor predict: error: ") and str(out) in err[0] and word in err[0]
    assert list(out.iterdir()) == []  # no partial drawing, detections.json or temp file


def test_predict_unwritable_folder_is_exit_2(capsys, tmp_path, monkeypatch, odd_ckpt, odd_ids_dataset):
    out = tmp_path / "ro"
    out.mkdir()
    real_mkstemp = tempfile.mkstemp

    def read_only(*a, dir=None, **kw):
        if dir is not None and str(dir).startswith(str(out)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkstemp(*a, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    img = next((odd_ids_dataset / "images").iterdir())
    code, _, err = predict(capsys, odd_ckpt, out, img)
    assert code == 2 and len(err) == 1 and "Read-only file system" in err[0] and str(out) in err[0], err
    assert list(out.iterdir()) == []


def test_predict_with_every_image_unreadable_is_exit_2(capsys, tmp_path, odd_ckpt):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"not an image")
    out = tmp_path / "pred"
    code, _, err = predict(capsys, odd_ckpt, out, folder)
    assert code == 2, err
    assert err[-1].startswith("metaanchor predict: error: ") and "2" in err[-1] and "unreadable" in err[-1]
    assert not (out / "detections.json").exists()


def test_predict_folder_reports_bad_images_and_goes_on(capsys, tmp_path, model_ckpt):
    folder = tmp_path / "imgs"
    _odd_images(folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    jpg = folder / "cut.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(jpg)
    jpg.write_bytes(jpg.read_bytes()[:200])
    out = tmp_path / "pred"
    code, stdout, err = cli(capsys, "predict", "--checkpoint", model_ckpt, "--device", "cpu", "--out", out, folder)
    assert code == 0
    assert sorted(err) == [f"skipped: {folder / 'broken.png'}: " + e.split("broken.png: ", 1)[1] if "broken" in e
                           else f"skipped: {jpg}: " + e.split("cut.jpg: ", 1)[1] for e in sorted(err)]
    assert len(err) == 2 and "2 unreadable images skipped" in stdout
    assert len(list(out.glob("*.png"))) == 8  # every odd-mode image was converted and drawn
    assert_user_error(capsys, ["predict", "--checkpoint", model_ckpt, "--device", "cpu", "--out", out,
                               "--fail-fast", folder], "cannot read image")


@pytest.mark.parametrize("extra, fragment", [
    (["nope.png"], "input nope.png: no such file or folder"),
    (["--score-thresh", "2", "IMG"], "--score-thresh 2.0: must be in 0..1"),
    (["--anchors", "scales=1e9", "IMG"], "scale '1e9' is outside 1e-06..1e+06"),
])
def test_bad_predict_arguments(capsys, tmp_path, model_ckpt, dataset, extra, fragment):
    img = next((dataset / "images").iterdir())
    extra = [str(img) if a == "IMG" else a for a in extra]
    assert_user_error(capsys, ["predict", "--checkpoint", model_ckpt, "--device", "cpu", "--out", tmp_path, *extra],
                      fragment)
