"""Hostile input files through the CLI: each is one line on stderr, exit code 2, no file changed, no hang."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
from conftest import assert_user_error
from PIL import Image
from test_readers import alias_bomb

TIMEOUT = 120  # s; a FIFO that is opened for reading never ends, so the command is killed


def digests(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(*args, cwd):
    """The CLI in a subprocess (FIFOs): (exit code, stderr lines); a hang fails the test after TIMEOUT."""
    proc = subprocess.run([sys.executable, "-m", "metaanchor", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stderr.strip().splitlines()


def coco_folder(tmp_path, categories=1, extra=""):
    (tmp_path / "src" / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "src" / "images" / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}],
            "categories": [{"id": i + 1, "name": f"c{i}"} for i in range(categories)]}
    text = json.dumps(data)
    if extra:
        text = text[:-1] + f', "info": {extra}}}'
    (tmp_path / "src" / "annotations.json").write_text(text)
    return tmp_path / "src"


def check_one_line(capsys, tmp_path, args, *fragments):
    before = digests(tmp_path)
    assert_user_error(capsys, args, *fragments)
    assert digests(tmp_path) == before


def test_config_alias_bomb(capsys, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(alias_bomb())
    check_one_line(capsys, tmp_path, ["train", "--config", f, "--out", tmp_path / "run"],
                   f"config file {f}: more than 64 YAML aliases (a limit against alias bombs")


def test_override_alias_bomb(capsys, tmp_path):
    bomb = "[" + ", ".join(f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" if i else "&a0 [1]" for i in range(9)) + "]"
    check_one_line(capsys, tmp_path, ["train", "--out", tmp_path / "run", f"anchors.eval={bomb}"],
                   "override anchors.eval: more than 64 YAML aliases")


@pytest.mark.parametrize("content, fragment", [
    (b"x: &a [1, *a]\n", "recursive alias"),
    (b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested deeper than 64 levels"),
    (b"solver:\n  max_iter: \xff\xfe\n", "not UTF-8 text (byte 20: b'\\xff')"),
    (b"solver:\n  max_iter: " + b"9" * 5000 + b"\n", "has more than 100 characters"),
    (b"solver:\n  lr: 0." + b"1" * 400 + b"\n", "has more than 100 characters"),
])
def test_hostile_config_file(capsys, tmp_path, content, fragment):
    f = tmp_path / "c.yaml"
    f.write_bytes(content)
    check_one_line(capsys, tmp_path, ["train", "--config", f, "--out", tmp_path / "run"], f"config file {f}: ",
                   fragment)


def test_anchor_file_alias_bomb(capsys, tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(alias_bomb())
    err = assert_user_error(capsys, ["anchors", "show", f, "--out", tmp_path / "a.png"])
    assert err == (f"metaanchor anchors: error: anchor file {f}: more than 64 YAML aliases (a limit against "
                   "alias bombs; raise it with the environment variable METAANCHOR_MAX_YAML_ALIASES=N)")


def test_negative_preset_spec_names_the_bad_part(capsys, tmp_path):
    for args in (["anchors", "show", "-1x3"], ["anchors", "show", "--", "-1x3"]):
        check_one_line(capsys, tmp_path, [*args, "--out", tmp_path / "a.png"],
                       "anchor SPEC '-1x3': number of scales '-1' is not a whole number in 1..16")


@pytest.mark.parametrize("extra, fragment", [
    ("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
    ("1" * 4301, "has more than 100 characters"),
    ("0." + "1" * 400, "has more than 100 characters"),
    ("1e999", "out of the range of a float"),
])
def test_hostile_coco_json(capsys, tmp_path, extra, fragment):
    src = coco_folder(tmp_path, extra=extra)
    check_one_line(capsys, tmp_path, ["data", "convert", "--src", src, "--src-format", "coco",
                                      "--dst", tmp_path / "out", "--dst-format", "yolo"],
                   f"{src / 'annotations.json'}: ", fragment)


def test_coco_category_count_is_capped(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("METAANCHOR_MAX_CATEGORIES", "10")
    src = coco_folder(tmp_path, categories=11)
    check_one_line(capsys, tmp_path, ["data", "convert", "--src", src, "--src-format", "coco",
                                      "--dst", tmp_path / "out", "--dst-format", "yolo"],
                   f"{src / 'annotations.json'}: 11 categories, more than 10 (a limit against memory exhaustion; "
                   "raise it with the environment variable METAANCHOR_MAX_CATEGORIES=N)")


def test_category_name_with_carriage_return_is_refused_for_yolo(capsys, tmp_path):
    src = coco_folder(tmp_path)
    data = json.loads((src / "annotations.json").read_text())
    data["categories"][0]["name"] = "cat\rdog"
    (src / "annotations.json").write_text(json.dumps(data))
    check_one_line(capsys, tmp_path, ["data", "convert", "--src", src, "--src-format", "coco",
                                      "--dst", tmp_path / "out", "--dst-format", "yolo"],
                   "category name 'cat\\rdog' cannot be written to", "holds a control character")


def test_yolo_label_linked_outside_the_dataset_is_not_echoed(capsys, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET first line\n")
    ds = tmp_path / "yolo"
    (ds / "images").mkdir(parents=True)
    (ds / "labels").mkdir()
    Image.new("RGB", (8, 8)).save(ds / "images" / "a.png")
    (ds / "classes.txt").write_text("cat\n")
    (ds / "labels" / "a.txt").symlink_to(secret)
    err = assert_user_error(capsys, ["data", "convert", "--src", ds / "labels", "--src-format", "yolo",
                                     "--images", ds / "images", "--dst", tmp_path / "out", "--dst-format", "coco"],
                            f"{ds / 'labels' / 'a.txt'}: label file is a link to a file outside")
    assert "TOP-SECRET" not in err


# ------------------------------------------------------------------ non-regular files, each in a subprocess
def test_convert_from_dev_zero(tmp_path):
    (tmp_path / "images").mkdir()
    code, err = run_cli("data", "convert", "--src", "/dev/zero", "--src-format", "coco", "--images",
                        tmp_path / "images", "--dst", tmp_path / "out", "--dst-format", "yolo", cwd=tmp_path)
    assert code == 2 and len(err) == 1, err
    assert "/dev/zero: is a character device, not a dataset folder or annotation file" in err[0]


def test_convert_from_a_fifo(tmp_path):
    (tmp_path / "images").mkdir()
    os.mkfifo(tmp_path / "ann.json")
    code, err = run_cli("data", "convert", "--src", tmp_path / "ann.json", "--src-format", "coco", "--images",
                        tmp_path / "images", "--dst", tmp_path / "out", "--dst-format", "yolo", cwd=tmp_path)
    assert code == 2 and len(err) == 1, err
    assert f"{tmp_path / 'ann.json'}: is a FIFO, not a dataset folder or annotation file" in err[0]


def test_predict_on_a_folder_holding_a_fifo(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    os.mkfifo(folder / "b.png")
    before = digests(tmp_path)
    code, err = run_cli("predict", "--checkpoint", tmp_path / "none.pt", "--out", tmp_path / "out", folder,
                        cwd=tmp_path)
    assert code == 2 and len(err) == 1, err
    assert f"input {folder / 'b.png'}: is a FIFO, not an image file" in err[0]
    assert digests(tmp_path) == before


def test_config_fifo(tmp_path):
    os.mkfifo(tmp_path / "c.yaml")
    code, err = run_cli("train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run", cwd=tmp_path)
    assert code == 2 and len(err) == 1, err
    assert f"config file {tmp_path / 'c.yaml'}: is a FIFO, not a regular file" in err[0]
