"""Every command that writes refuses, before any work, an output that would destroy one of its inputs.

Each hostile case exits 2 with one line naming the output and the input it clashes with, and leaves
every file under the inputs byte for byte as it was.
"""

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch
from conftest import TINY, cli, tiny_detector
from hypothesis import given
from hypothesis import strategies as st

from metaanchor.data.synth import synth_config, write_synth_dataset
from metaanchor.errors import UserError
from metaanchor.files import OutputClash, check_outputs, make_folder, write_text

ANCHORS_YAML = "anchors:\n- [1.0, 1.0]\n- [0.5, 2.0]\n"


def digest(*roots) -> dict:
    """SHA-256 of every file under ``roots`` (files or folders), by path."""
    out = {}
    for root in map(Path, roots):
        for f in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def refused(capsys, args: list, inputs: list, *names) -> str:
    """Run the CLI: exit 2, one line naming each of ``names``, every file under ``inputs`` unchanged."""
    before = digest(*inputs)
    code, _, err = cli(capsys, *args)
    assert code == 2, err
    errors = [line for line in err if line.startswith("metaanchor ")]  # progress bars may come before it
    assert len(errors) == 1 and err[-1] == errors[0], err
    for name in names:
        assert str(name) in errors[0], (name, errors[0])
    assert digest(*inputs) == before
    return errors[0]


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.fixture()
def ds(tmp_path):
    """A 3-image COCO dataset folder."""
    return write_synth_dataset(tmp_path / "ds", 3, synth_config("default", seed=2), progress=False)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    tiny_detector(class_names=["a", "b", "c"]).save(path)
    return path


# --------------------------------------------------------------------------- eval


def eval_args(ckpt, ds, *extra):
    return ["eval", "--checkpoint", ckpt, "--data", ds, "--device", "cpu", *extra]


def test_eval_json_out_on_the_annotations_is_refused(capsys, ckpt, ds):
    ann = ds / "annotations.json"
    err = refused(capsys, eval_args(ckpt, ds, "--json-out", ann), [ds, ckpt], f"--json-out {ann}", "--data")
    assert "would overwrite" in err or "is inside" in err


def test_eval_save_json_on_the_checkpoint_is_refused(capsys, ckpt, ds):
    refused(capsys, eval_args(ckpt, ds, "--save-json", ckpt), [ds, ckpt], f"--save-json {ckpt}",
            f"would overwrite the input --checkpoint ({ckpt})")


def test_eval_json_out_on_the_checkpoint_through_dotdot_is_refused(capsys, ckpt, ds):
    alias = ckpt.parent / "x" / ".." / ckpt.name
    refused(capsys, eval_args(ckpt, ds, "--json-out", alias), [ds, ckpt], f"--json-out {alias}", "--checkpoint")


def test_eval_plot_inside_the_image_folder_is_refused(capsys, ckpt, ds):
    plot = ds / "images" / "x.png"
    refused(capsys, eval_args(ckpt, ds, "--plot", plot), [ds, ckpt], f"--plot {plot}: is inside the input --data")
    assert not plot.exists()


def test_eval_json_out_through_a_symlink_into_the_dataset_is_refused(capsys, ckpt, ds, tmp_path):
    (tmp_path / "link").symlink_to(ds)
    out = tmp_path / "link" / "annotations.json"
    refused(capsys, eval_args(ckpt, ds, "--json-out", out), [ds, ckpt], f"--json-out {out}", "--data")


def test_eval_json_out_on_a_fifo_is_refused(capsys, ckpt, ds, tmp_path):
    out = fifo(tmp_path / "pipe")
    refused(capsys, eval_args(ckpt, ds, "--json-out", out), [ds, ckpt],
            f"--json-out {out}: exists and is not a regular file")
    assert not out.is_file()


def test_eval_two_outputs_with_one_name_are_refused(capsys, ckpt, ds, tmp_path):
    out = tmp_path / "m.json"
    refused(capsys, eval_args(ckpt, ds, "--json-out", out, "--save-json", out), [ds, ckpt], "--save-json",
            "--json-out")


# --------------------------------------------------------------------------- predict


def test_predict_detections_json_on_an_input_image_is_refused(capsys, ckpt, ds, tmp_path):
    image = tmp_path / "out" / "detections.json"
    image.parent.mkdir()
    image.write_bytes((ds / "images" / "000000.png").read_bytes())
    refused(capsys, ["predict", "--checkpoint", ckpt, "--out", image.parent, image], [image, ckpt],
            f"--out {image}: would overwrite the input IMAGE")


def test_predict_on_a_fifo_detections_json_is_refused(capsys, ckpt, ds, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fifo(out / "detections.json")
    refused(capsys, ["predict", "--checkpoint", ckpt, "--out", out, ds / "images"], [ds, ckpt],
            f"--out {out / 'detections.json'}: exists and is not a regular file")


def test_predict_out_that_is_a_file_is_refused(capsys, ckpt, ds):
    ann = ds / "annotations.json"
    refused(capsys, ["predict", "--checkpoint", ckpt, "--out", ann, ds / "images"], [ds, ckpt],
            f"--out {ann}: exists and is not a folder")


def test_predict_into_its_own_input_folder_still_works(capsys, ckpt, ds):
    before = digest(ds / "images")
    code, _, err = cli(capsys, "predict", "--checkpoint", ckpt, "--out", ds / "images", "--device", "cpu",
                       ds / "images")
    assert code == 0, err
    assert all(digest(ds / "images")[k] == v for k, v in before.items())
    assert (ds / "images" / "000000_det.png").is_file()


# --------------------------------------------------------------------------- anchors


def test_anchors_show_out_on_its_anchor_file_is_refused(capsys, tmp_path):
    spec = tmp_path / "a.yaml"
    spec.write_text(ANCHORS_YAML)
    refused(capsys, ["anchors", "show", spec, "--out", spec], [spec], f"--out {spec}: would overwrite the input SPEC")


def test_anchors_show_out_on_a_fifo_is_refused(capsys, tmp_path):
    out = fifo(tmp_path / "pipe.png")
    refused(capsys, ["anchors", "show", "3x3", "--out", out], [], f"--out {out}: exists and is not a regular file")


def test_anchors_fit_out_on_the_annotations_is_refused(capsys, ds):
    ann = ds / "annotations.json"
    refused(capsys, ["anchors", "fit", "--data", ds, "--out", ann], [ds], f"--out {ann}", "--data")


def test_anchors_fit_plot_inside_the_dataset_is_refused(capsys, ds, tmp_path):
    plot = ds / "images" / "x.png"
    refused(capsys, ["anchors", "fit", "--data", ds, "--out", tmp_path / "a.yaml", "--plot", plot], [ds],
            f"--plot {plot}: is inside the input --data")


def test_anchors_fit_out_on_its_config_is_refused(capsys, ds, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  arch: retinanet\n")
    refused(capsys, ["anchors", "fit", "--data", ds, "--config", config, "--out", config], [ds, config],
            f"--out {config}: would overwrite the input --config")


def test_anchors_fit_out_through_a_symlinked_folder_is_refused(capsys, ds, tmp_path):
    (tmp_path / "link").symlink_to(ds)
    out = tmp_path / "link" / "a.yaml"
    refused(capsys, ["anchors", "fit", "--data", ds, "--out", out], [ds], f"--out {out}: is inside the input --data")


def test_anchors_fit_out_on_a_fifo_is_refused(capsys, ds, tmp_path):
    out = fifo(tmp_path / "pipe.yaml")
    refused(capsys, ["anchors", "fit", "--data", ds, "--out", out], [ds], "exists and is not a regular file")


@pytest.mark.parametrize("command", ["fit", "search"])
def test_anchor_file_out_with_a_suffix_anchors_cannot_read_is_refused(capsys, ckpt, ds, tmp_path, command):
    out = tmp_path / "fit.txt"
    extra = ["--checkpoint", ckpt] if command == "search" else []
    err = refused(capsys, ["anchors", command, "--data", ds, "--out", out, *extra], [ds, ckpt], f"--out {out}",
                  ".json, .yaml, .yml")
    assert "anchor file" in err and not out.exists()


def test_anchors_search_out_on_its_start_file_is_refused(capsys, ckpt, ds, tmp_path):
    start = tmp_path / "start.yaml"
    start.write_text(ANCHORS_YAML)
    refused(capsys, ["anchors", "search", "--checkpoint", ckpt, "--data", ds, "--start", start, "--out", start],
            [ds, ckpt, start], f"--out {start}: would overwrite the input --start")


def test_anchors_search_out_inside_the_dataset_is_refused(capsys, ckpt, ds):
    out = ds / "best.yaml"
    refused(capsys, ["anchors", "search", "--checkpoint", ckpt, "--data", ds, "--out", out], [ds, ckpt],
            f"--out {out}: is inside the input --data")


# --------------------------------------------------------------------------- data convert / synth


def convert_args(src, dst, dst_format="yolo"):
    return ["data", "convert", "--src", src, "--src-format", "coco", "--dst", dst, "--dst-format", dst_format]


@pytest.mark.parametrize("dst_format", ["coco", "voc", "yolo"])
def test_convert_dst_equal_to_src_is_refused(capsys, ds, dst_format):
    refused(capsys, convert_args(ds, ds, dst_format), [ds], f"--dst {ds}: would overwrite the input --src ({ds})")
    assert not (ds / "classes.txt").exists() and not (ds / "labels").exists()


def test_convert_dst_inside_src_is_refused(capsys, ds):
    dst = ds / "yolo"
    refused(capsys, convert_args(ds, dst), [ds], f"--dst {dst}: is inside the input --src ({ds})")
    assert not dst.exists()


def test_convert_dst_containing_src_is_refused(capsys, ds):
    refused(capsys, convert_args(ds, ds.parent), [ds], f"--dst {ds.parent}: contains the input --src ({ds})")


def test_convert_dst_through_dotdot_is_refused(capsys, ds):
    dst = ds / "images" / ".."
    refused(capsys, convert_args(ds, dst), [ds], f"--dst {dst}", "--src")


def test_convert_dst_symlinked_to_src_is_refused(capsys, ds, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(ds)
    refused(capsys, convert_args(ds, link, "coco"), [ds], f"--dst {link}", "--src")


def test_convert_dst_containing_the_image_folder_is_refused(capsys, ds, tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_bytes((ds / "annotations.json").read_bytes())
    args = ["data", "convert", "--src", ann, "--src-format", "coco", "--images", ds / "images", "--dst", ds,
            "--dst-format", "yolo"]
    refused(capsys, args, [ds, ann], f"--dst {ds}: contains the input --images")


def test_convert_dst_on_a_fifo_is_refused(capsys, ds, tmp_path):
    dst = fifo(tmp_path / "pipe")
    refused(capsys, convert_args(ds, dst), [ds], f"--dst {dst}: exists and is not a folder")


def test_convert_never_writes_through_a_symlinked_images_folder(capsys, ds, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "000000.png").write_bytes(b"keep me")
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "images").symlink_to(elsewhere)
    refused(capsys, convert_args(ds, dst), [ds, elsewhere], f"{dst / 'images'}: is a symlink")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["000000.png"]


@pytest.mark.parametrize("subfolder", ["labels", "Annotations"])
def test_convert_never_writes_through_a_symlinked_label_folder(capsys, ds, tmp_path, subfolder):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / subfolder).symlink_to(elsewhere)
    refused(capsys, convert_args(ds, dst, "yolo" if subfolder == "labels" else "voc"), [ds, elsewhere],
            f"{dst / subfolder}: is a symlink")
    assert list(elsewhere.iterdir()) == []


def test_synth_never_writes_through_a_symlinked_images_folder(capsys, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").symlink_to(elsewhere)
    refused(capsys, ["data", "synth", "--out", out, "--images", 2], [], f"{out / 'images'}: is a symlink")
    assert list(elsewhere.iterdir()) == []


def test_synth_out_on_a_fifo_is_refused(capsys, tmp_path):
    out = fifo(tmp_path / "pipe")
    refused(capsys, ["data", "synth", "--out", out, "--images", 2], [], f"--out {out}: exists and is not a folder")


# --------------------------------------------------------------------------- export / import


def test_export_output_through_a_symlink_to_the_checkpoint_is_refused(capsys, ckpt, tmp_path):
    link = tmp_path / "link.onnx"
    link.symlink_to(ckpt)
    refused(capsys, ["export", "--checkpoint", ckpt, "--format", "onnx", "--output", link], [ckpt],
            f"--output {link}: would overwrite the input --checkpoint")


def test_export_torchvision_sidecar_never_replaces_a_dataset_annotation_file(capsys, ckpt, ds):
    out = ds / "annotations.pth"
    err = refused(capsys, ["export", "--checkpoint", ckpt, "--format", "torchvision", "--output", out], [ds, ckpt],
                  f"--output {out}", ds / "annotations.json")
    assert not out.exists()
    assert "export did not write" in err


def test_export_output_on_a_fifo_is_refused(capsys, ckpt, tmp_path):
    out = fifo(tmp_path / "pipe.onnx")
    refused(capsys, ["export", "--checkpoint", ckpt, "--format", "onnx", "--output", out], [ckpt],
            f"--output {out}: exists and is not a regular file")


def test_import_out_through_dotdot_onto_the_weights_is_refused(capsys, tmp_path):
    weights = tmp_path / "w.pth"
    torch.save({}, weights)
    alias = tmp_path / "sub" / ".." / "w.pth"
    refused(capsys, ["import", "--from", "torchvision-retinanet", "--weights", weights, "--out", alias], [weights],
            f"--out {alias}: would overwrite the input --weights")


def test_import_out_on_a_fifo_is_refused(capsys, tmp_path):
    weights = tmp_path / "w.pth"
    torch.save({}, weights)
    out = fifo(tmp_path / "pipe.pt")
    refused(capsys, ["import", "--from", "torchvision-retinanet", "--weights", weights, "--out", out], [weights],
            f"--out {out}: exists and is not a regular file")


# --------------------------------------------------------------------------- train / demo


@pytest.fixture()
def config(tmp_path, ds):
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  train: {ds}\nsolver:\n  max_iter: 1\n")
    return path


def train_args(config, out, *extra):
    """``metaanchor train`` with the options in ``extra`` first, then the KEY=VALUE overrides."""
    options = [a for a in extra if str(a).startswith("--")]
    return ["train", *options, "--config", config, "--out", out, *TINY, *(a for a in extra if a not in options)]


def test_train_config_inside_the_run_folder_is_refused(capsys, tmp_path, ds):
    out = tmp_path / "run"
    out.mkdir()
    config = out / "config.yaml"
    config.write_text(f"data:\n  train: {ds}\nsolver:\n  max_iter: 1\n")
    refused(capsys, train_args(config, out, "--exist-ok"), [config, ds],
            f"--out {out}: contains the input --config ({config})")
    refused(capsys, train_args(config, out, "--resume"), [config, ds],
            f"--out {out}: contains the input --config ({config})")


def test_train_into_a_run_folder_holding_its_config_goes_to_a_new_folder(capsys, tmp_path, ds):
    out = tmp_path / "run"
    out.mkdir()
    config = out / "config.yaml"
    config.write_text(f"data:\n  train: {ds}\nsolver:\n  max_iter: 1\n")
    before = digest(config, ds)
    code, out_text, err = cli(capsys, *train_args(config, out))
    assert code == 0, err
    assert out_text.splitlines()[0] == (f"{out} holds another run's files: this run goes to {tmp_path / 'run2'} "
                                        "(--resume continues that run, --exist-ok writes into it)")
    assert digest(config, ds) == before and (tmp_path / "run2" / "last.pt").is_file()


def test_train_run_folder_inside_the_dataset_is_refused(capsys, config, ds):
    out = ds / "run"
    refused(capsys, train_args(config, out), [config, ds], f"--out {out}: is inside the input data.train")
    assert not out.exists()


def test_train_run_folder_equal_to_the_dataset_is_refused(capsys, config, ds):
    refused(capsys, train_args(config, ds, "--exist-ok"), [config, ds],
            f"--out {ds}: would overwrite the input data.train")


def test_train_init_from_inside_the_run_folder_is_refused(capsys, config, ds, ckpt, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    init = out / "last.pt"
    init.write_bytes(ckpt.read_bytes())
    refused(capsys, train_args(config, out, "--resume", f"model.init_from={init}"), [config, ds, init],
            f"--out {out}: contains the input model.init_from")


def test_train_run_folder_symlinked_to_the_dataset_is_refused(capsys, config, ds, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(ds)
    refused(capsys, train_args(config, link, "--exist-ok"), [config, ds], f"--out {link}", "data.train")


def test_train_run_folder_on_a_fifo_is_refused(capsys, config, ds, tmp_path):
    out = fifo(tmp_path / "pipe")
    refused(capsys, train_args(config, out), [config, ds], f"--out {out}: exists and is not a folder")


def test_demo_config_inside_the_run_folder_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    config = out / "config.yaml"
    config.write_text("solver:\n  max_iter: 1\n")
    refused(capsys, ["demo", "--config", config, "--out", out], [config], f"--out {out}: contains the input --config")
    assert not (out / "data").exists()


def test_demo_run_folder_on_a_fifo_is_refused(capsys, tmp_path):
    out = fifo(tmp_path / "pipe")
    refused(capsys, ["demo", "--out", out], [], f"--out {out}: exists and is not a folder")


# --------------------------------------------------------------------------- the policy and the writer


def test_write_atomic_refuses_a_character_device(tmp_path):
    device = Path("/dev/null")
    with pytest.raises(UserError, match="exists and is not a regular file"):
        write_text(device, "x")
    assert device.is_char_device()


def test_write_atomic_refuses_a_fifo_and_a_symlink_to_one(tmp_path):
    pipe = fifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to(pipe)
    for path in (pipe, tmp_path / "link"):
        with pytest.raises(UserError, match=f"{path}: exists and is not a regular file"):
            write_text(path, "x")
    assert not pipe.is_file() and (tmp_path / "link").is_symlink()


def test_make_folder_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "images").write_text("x")
    with pytest.raises(OutputClash, match="images: exists and is not a folder"):
        make_folder(tmp_path / "out" / "images" / "sub", tmp_path / "out")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/in/ann.json, root/in/images/a.png, root/link -> in, root/other/ (no input)."""
    root = tmp_path_factory.mktemp("tree")
    (root / "in" / "images").mkdir(parents=True)
    (root / "in" / "ann.json").write_text("{}")
    (root / "in" / "images" / "a.png").write_bytes(b"png")
    (root / "link").symlink_to(root / "in")
    (root / "other").mkdir()
    return root


TARGETS = ["in/ann.json", "in/images/a.png", "in/images", "in", "in/images/new.png", "in/new/deeper.json"]


SCENARIOS = {  # the inputs of a command: a dataset folder, or an annotation file and its image folder
    "folder": {"--data": "in"},
    "files": {"--ann": "in/ann.json", "--images": "in/images"},
}


@given(target=st.sampled_from(TARGETS), route=st.sampled_from(["direct", "dotdot", "link", "dot"]),
       folder=st.booleans(), scenario=st.sampled_from(sorted(SCENARIOS)))
def test_property_an_alias_of_an_input_is_always_refused(tree, target, route, folder, scenario):
    rel = Path(target)
    if scenario == "files" and target == "in/new/deeper.json":
        rel = Path("in/images/new/deeper.json")  # inside an input, as every target
    if route == "dotdot":
        path = tree / "other" / ".." / rel
    elif route == "link":
        path = tree / "link" / rel.relative_to("in")
    elif route == "dot":
        path = tree / "." / rel.parent / "." / rel.name
    else:
        path = tree / rel
    inputs = {name: tree / where for name, where in SCENARIOS[scenario].items()}
    with pytest.raises(OutputClash) as e:
        check_outputs({"--out": path}, inputs, folders=["--out"] if folder else [])
    message = str(e.value)
    assert message.startswith(f"--out {path}: ") and "\n" not in message
    assert any(f"the input {name} ({inputs[name]})" in message for name in inputs) or "exists and is not" in message


@given(name=st.text(st.sampled_from("abc._-"), min_size=1, max_size=8).filter(lambda s: s not in (".", "..")),
       folder=st.booleans())
def test_property_an_output_beside_the_inputs_is_allowed(tree, name, folder):
    check_outputs({"--out": tree / "other" / name}, {"--data": tree / "in", "--link": tree / "link"},
                  folders=["--out"] if folder else [])


def test_property_folder_output_containing_an_input_is_refused_unless_allowed(tree):
    inputs = {"data.train": tree / "in" / "images"}
    with pytest.raises(OutputClash, match="contains the input data.train"):
        check_outputs({"--out": tree}, inputs, folders=["--out"])
    check_outputs({"--out": tree}, inputs, folders=["--out"], may_contain=["data.train"])


# --------------------------------------------------------------------------- write failures


def enospc(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)


def test_convert_into_a_full_disk_leaves_nothing(capsys, ds, tmp_path, monkeypatch):
    dst = tmp_path / "dst"
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    enospc(monkeypatch)
    refused(capsys, convert_args(ds, dst), [ds], "No space left on device")
    assert not dst.exists()


def test_convert_into_a_path_under_a_file_is_exit_2(capsys, ds, tmp_path):
    (tmp_path / "file").write_text("x")
    dst = tmp_path / "file" / "dst"
    refused(capsys, convert_args(ds, dst), [ds, tmp_path / "file"], dst)


def test_convert_into_a_file_is_exit_2(capsys, ds, tmp_path):
    (tmp_path / "file").write_text("x")
    refused(capsys, convert_args(ds, tmp_path / "file"), [ds, tmp_path / "file"],
            f"--dst {tmp_path / 'file'}: exists and is not a folder")


def test_synth_into_a_full_disk_leaves_nothing(capsys, tmp_path, monkeypatch):
    out = tmp_path / "out"
    enospc(monkeypatch)
    refused(capsys, ["data", "synth", "--out", out, "--images", 3], [], "No space left on device")
    assert not out.exists()


def test_synth_into_an_existing_folder_on_a_full_disk_keeps_only_what_was_there(capsys, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    enospc(monkeypatch)
    refused(capsys, ["data", "synth", "--out", out, "--images", 3], [out], "No space left on device")
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["notes.txt"]


def test_synth_into_a_path_under_a_file_is_exit_2(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    refused(capsys, ["data", "synth", "--out", tmp_path / "file" / "ds", "--images", 2], [tmp_path / "file"],
            tmp_path / "file")


def test_anchors_show_into_a_path_under_a_file_is_exit_2(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "a.png"
    refused(capsys, ["anchors", "show", "3x3", "--out", out], [tmp_path / "file"], out)


def test_anchors_show_on_a_full_disk_leaves_nothing(capsys, tmp_path, monkeypatch):
    enospc(monkeypatch)
    refused(capsys, ["anchors", "show", "3x3", "--out", tmp_path / "a.png"], [], "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_anchors_fit_into_a_path_under_a_file_is_exit_2(capsys, ds, tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "a.yaml"
    refused(capsys, ["anchors", "fit", "--data", ds, "--out", out, "--num", 3], [ds, tmp_path / "file"], out)


def test_anchors_search_into_a_path_under_a_file_is_exit_2(capsys, ckpt, ds, tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "a.yaml"
    refused(capsys, ["anchors", "search", "--checkpoint", ckpt, "--data", ds, "--out", out, "--budget", 1,
                     "--device", "cpu", "--start", "1x1"], [ds, ckpt, tmp_path / "file"], out)
