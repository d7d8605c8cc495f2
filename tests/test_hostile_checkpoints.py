"""A checkpoint or weights file someone hands you cannot fetch, read other files, exhaust memory or crash.

Every field of a checkpoint's ``model_config`` is checked with a config's ranges before anything is
built; loading never reads ``backbone_weights`` (a download or another file) or an anchor file. A zip
whose records would inflate far beyond the file is refused before ``torch.load``. Weights files holding
the wrong thing, a failed write (disk full) and malformed training state are one line naming the file.
Nothing here downloads: torchvision's cache (TORCH_HOME) is an empty folder that must stay empty.
"""

import errno
import hashlib
import os
import pickle
import resource
import zipfile

import pytest
import torch
from conftest import TINY, cli, tiny_detector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaanchor import checkpoint as ckpt
from metaanchor.data.synth import synth_config, write_synth_dataset
from metaanchor.deploy.torchvision_import import import_torchvision_retinanet
from metaanchor.engine.anchor_search import check_classes
from metaanchor.errors import CheckpointError, UserError
from metaanchor.families import load_detector
from metaanchor.files import WriteError
from metaanchor.modeling.backbones import build_backbone


@pytest.fixture(autouse=True)
def no_downloads(tmp_path, monkeypatch):
    """An empty torchvision cache, and any download attempt a failure; the cache must stay empty."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("METAANCHOR_MAX_CHECKPOINT_BYTES", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    yield home
    assert not any(home.rglob("*")), list(home.rglob("*"))


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def payload():
    return tiny_detector().checkpoint_payload()


def hostile(tmp_path, payload, **changes):
    """A checkpoint that looks right (format, version, weights) with ``changes`` to its model config."""
    path = tmp_path / "handed.pt"
    torch.save(dict(payload, model_config=payload["model_config"] | changes), path)
    return path


def load_error(path) -> str:
    with pytest.raises(CheckpointError) as e:
        load_detector(path)
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------------- model_config
NOT_USABLE = "its model config is not usable here: config key model_config."


@pytest.mark.parametrize("changes, message", [
    (dict(num_classes=1e9), "num_classes: expected int, got 1000000000.0"),
    (dict(num_classes=10**9), "num_classes: 1000000000 is out of range; allowed: in 1..100000"),
    (dict(num_classes=-3), "num_classes: -3 is out of range; allowed: in 1..100000"),
    (dict(fpn_channels=200000), "fpn_channels: 200000 is out of range; allowed: > 0 and <= 4096"),
    (dict(min_size=60000), "min_size: 60000 is out of range; allowed: > 0 and <= 4096"),
    (dict(min_size=-5), "min_size: -5 is out of range; allowed: > 0 and <= 4096"),
    (dict(max_size=10**6), "max_size: 1000000 is out of range; allowed: > 0 and <= 8192"),
    (dict(topk_candidates=-1), "topk_candidates: -1 is out of range; allowed: > 0 and <= 1000000"),
    (dict(score_thresh=float("nan")), "score_thresh: nan is not a finite number"),
    (dict(score_thresh=2.0), "score_thresh: 2.0 is out of range; allowed: in 0..1"),
    (dict(hidden_dim="wide"), "hidden_dim: expected int, got 'wide'"),
    (dict(backbone="vgg"), "backbone: 'vgg' is not one of tiny, resnet18, resnet34, resnet50, resnet101"),
    (dict(class_names=[1, 2, 3]), "class_names: item 1 is not a str"),
    (dict(anchors="evil.yaml"), "anchors: expected an anchor set (a dict or a SPEC string), got 'evil.yaml'"),
    (dict(anchors={"shapes": [[1.0, 1.0]] * 1000}), "anchors: anchor shapes: 1000 anchors per position; at most 64"),
    (dict(code_range=[[0, "a"], [1, 1]]),
     "code_range: expected [[lo_h, lo_w], [hi_h, hi_w]] finite numbers, got [[0, 'a'], [1, 1]]"),
])
def test_out_of_range_model_config_is_one_line(tmp_path, payload, changes, message):
    path = hostile(tmp_path, payload, **changes)
    assert load_error(path) == f"checkpoint {path}: {NOT_USABLE}{message}"


def test_unknown_model_config_keys_are_named(tmp_path, payload):
    path = hostile(tmp_path, payload, init_from="/etc/passwd", zoom=2)
    msg = load_error(path)
    assert msg.startswith(f"checkpoint {path}: its model config is not usable here: model_config: unknown keys "
                          "init_from, zoom (model.arch=retinanet takes backbone, backbone_weights, "), msg


def test_a_model_config_the_weights_do_not_match_allocates_nothing(tmp_path, payload):
    path = hostile(tmp_path, payload, num_classes=100000, class_names=None, category_ids=None, fpn_channels=4096,
                   head_convs=16)  # in range, but tens of GB of tensors the checkpoint does not hold
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    msg = load_error(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 500_000
    assert msg.startswith(f"checkpoint {path}: weights do not fit the model: missing keys head.cls_tower.2.weight, "
                          "head.cls_tower.2.bias, head.cls_tower.4.weight, head.cls_tower.4.bias (+56 more); "
                          "mismatched shapes backbone.body.fpn.inner_blocks.0.0.weight (16, 64, 1, 1) "
                          "(model (4096, 64, 1, 1))"), msg


def test_a_non_tensor_in_the_weights_is_named(tmp_path, payload):
    path = tmp_path / "handed.pt"
    torch.save(dict(payload, model=payload["model"] | {"head.x": [1, 2]}), path)
    assert load_error(path) == f"checkpoint {path}: entry 'model' holds 'head.x': a list, not a tensor"


@pytest.mark.parametrize("weights", ["imagenet", "file"])
def test_backbone_weights_in_a_checkpoint_are_never_fetched_or_read(tmp_path, payload, monkeypatch, weights):
    import metaanchor.modeling.backbones as backbones

    other = tmp_path / "other.pth"
    other.write_bytes(b"secret")
    path = hostile(tmp_path, payload, backbone_weights=str(other) if weights == "file" else "imagenet")
    monkeypatch.setattr(backbones, "load_tensor_file", lambda *a, **k: pytest.fail("read another file"))
    model = load_detector(path)  # the weights come from the checkpoint
    assert torch.equal(model.state_dict()["backbone.body.fpn.inner_blocks.0.0.weight"],
                       payload["model"]["backbone.body.fpn.inner_blocks.0.0.weight"])


def test_predict_with_a_hostile_checkpoint_is_exit_2_and_changes_nothing(tmp_path, payload, capsys):
    path = hostile(tmp_path, payload, min_size=60000)
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    before = {p: sha(p) for p in (path, image)}
    code, out, err = cli(capsys, "predict", "--checkpoint", path, "--device", "cpu", "--out", tmp_path / "p", image)
    assert code == 2 and len(err) == 1, err
    assert err[0].endswith(f"checkpoint {path}: {NOT_USABLE}min_size: 60000 is out of range; allowed: > 0 and <= 4096")
    assert {p: sha(p) for p in before} == before and not any((tmp_path / "p").rglob("*"))


# ---------------------------------------------------------- hypothesis: any model_config
FIELDS = ["num_classes", "fpn_channels", "head_convs", "hidden_dim", "min_size", "max_size", "score_thresh",
          "topk_candidates", "detections_per_img", "nms_thresh", "anchor_base", "fg_iou", "bg_iou", "head",
          "backbone", "backbone_weights", "head_norm", "class_names", "category_ids", "anchors", "code_range",
          "frozen_bn", "arch", "unknown"]
SMALL = 32  # sizes kept small enough to build quickly; the ranges' edges are the parametrized cases above
values = st.one_of(
    st.integers(-3, SMALL), st.sampled_from([10**9, 2**63, -(2**31)]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(max_size=8), st.sampled_from(["tiny", "resnet18", "imagenet", "gn", "predefined", "3x3", "x.yaml"]),
    st.lists(st.integers(-1, 4), max_size=4), st.lists(st.text(max_size=3), max_size=4),
    st.dictionaries(st.sampled_from(["spec", "shapes", "per_level", "x"]),
                    st.one_of(st.none(), st.text(max_size=4), st.lists(st.lists(st.floats(), max_size=3),
                                                                       max_size=3)), max_size=3),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(FIELDS), values, min_size=1, max_size=4))
def test_any_model_config_is_a_checkpoint_error_or_a_small_model(payload, changes):
    config = payload["model_config"] | changes
    if config.get("backbone") == "resnet18" and config.get("fpn_channels") == 256:
        config["fpn_channels"] = 16  # a ResNet would be a valid but slow build
    try:
        model = load_detector_from(dict(payload, model_config=config))
    except CheckpointError as e:
        assert "\n" not in str(e)
        return
    assert sum(t.numel() for t in model.state_dict().values()) == sum(
        t.numel() for t in payload["model"].values())


def load_detector_from(payload):
    from metaanchor.families import ARCHS

    arch = payload["model_config"].get("arch", "retinanet")
    if arch not in ARCHS:
        raise CheckpointError(f"unknown arch {arch!r}")
    return ARCHS[arch].from_payload(payload, "handed.pt")


# ------------------------------------------------------------------------- zip bombs
def deflated_bomb(path, numel: int):
    """A real torch checkpoint of a zero tensor of ``numel`` floats, its records re-compressed (deflate)."""
    plain_file = path.with_suffix(".plain")
    torch.save({"format": "metaanchor", "version": "0.1.0", "model_config": {}, "model": {"w": torch.zeros(numel)}},
               plain_file)
    with zipfile.ZipFile(plain_file) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    plain_file.unlink()
    return path


def test_a_decompression_bomb_is_refused_before_loading(tmp_path, monkeypatch):
    bomb = deflated_bomb(tmp_path / "bomb.pt", 16 << 20)  # 64 MiB of zeros in a ~64 KB file
    size = bomb.stat().st_size
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran"))
    with pytest.raises(CheckpointError) as e:
        ckpt.load(bomb)
    record = next(i for i in zipfile.ZipFile(bomb).infolist() if i.file_size == 64 << 20)
    total = sum(i.file_size for i in zipfile.ZipFile(bomb).infolist())
    assert str(e.value) == (f"checkpoint {bomb}: refused, its records inflate to {total} bytes from a {size}-byte "
                            f"file ({record.filename}: {64 << 20} bytes), more than torch.save writes: "
                            "a decompression bomb")
    with pytest.raises(UserError, match=rf"^model.backbone_weights={bomb}: refused, its records inflate to"):
        build_backbone("tiny", 16, str(bomb))


def test_checkpoint_size_cap_is_named_with_how_to_raise_it(tmp_path, monkeypatch, payload):
    path = tmp_path / "big.pt"
    torch.save(payload, path)
    total = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    monkeypatch.setenv("METAANCHOR_MAX_CHECKPOINT_BYTES", "1000")
    with pytest.raises(CheckpointError) as e:
        ckpt.load(path)
    assert str(e.value) == (f"checkpoint {path}: refused, its records hold {total} bytes, above the 1000-byte "
                            "limit; raise it with the environment variable METAANCHOR_MAX_CHECKPOINT_BYTES=N")
    monkeypatch.setenv("METAANCHOR_MAX_CHECKPOINT_BYTES", "lots")
    with pytest.raises(UserError, match="^METAANCHOR_MAX_CHECKPOINT_BYTES='lots': must be a positive integer$"):
        ckpt.load(path)


# ---------------------------------------------------------------- disk full on save
@pytest.mark.parametrize("failure, cause", [
    (RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: "
                  "file write failed"), "write failed (disk full?)"),
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
])
def test_disk_full_while_saving_is_one_line_and_leaves_the_old_file(tmp_path, monkeypatch, failure, cause):
    path = tmp_path / "last.pt"
    path.write_bytes(b"previous checkpoint")
    before = sha(path)
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save({"partial": torch.zeros(10)}, f)
        raise failure

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteError) as e:
        tiny_detector().save(path)
    assert str(e.value) == f"cannot write {path}: {cause}"
    assert sha(path) == before and sorted(os.listdir(tmp_path)) == ["last.pt", "torch_home"]


def test_disk_full_in_torchvision_export_is_one_line(tmp_path, monkeypatch):
    from metaanchor.deploy import torchvision_export

    def full_disk(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torchvision_export, "torchvision_state_dict", lambda model: {"w": torch.zeros(1)})
    monkeypatch.setattr(torchvision_export, "torchvision_build", lambda model: {})
    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "tv.pth"
    with pytest.raises(WriteError, match=rf"^cannot write {out}: write failed \(disk full\?\)$"):
        torchvision_export.export_torchvision(None, out)
    assert sorted(os.listdir(tmp_path)) == ["torch_home"]


# ------------------------------------------------------------------- weights files
class Gadget:
    def __reduce__(self):
        return os.system, ("true",)


@pytest.mark.parametrize("content, message", [
    (torch.zeros(3), "not a state dict (a mapping of parameter names to tensors), a Tensor"),
    ([torch.zeros(3)], "not a state dict (a mapping of parameter names to tensors), a list"),
    ({"stem.0.0.weight": [1, 2]}, "not a state dict (a mapping of parameter names to tensors), a dict of other values"),
    ({"stem.0.0.weight": torch.zeros(2, 2)}, "the tiny backbone's tensors have other shapes: mismatched shapes "
                                             "stem.0.0.weight (2, 2) (backbone (16, 3, 3, 3))"),
    ({"fc.weight": torch.zeros(2)}, "no tensor matches the tiny backbone"),
])
def test_bad_backbone_weights_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "w.pth"
    torch.save(content, path)
    with pytest.raises(UserError) as e:
        build_backbone("tiny", 16, str(path))
    assert str(e.value) == f"model.backbone_weights={path}: {message}"


def test_a_pickle_gadget_in_a_weights_file_names_the_global(tmp_path):
    path = tmp_path / "w.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": Gadget()}, f)
    torch.save({"x": Gadget()}, path)
    with pytest.raises(UserError) as e:
        build_backbone("tiny", 16, str(path))
    assert str(e.value) == (f"model.backbone_weights={path}: refused, not a tensors-only file (its pickle names "
                            "the global posix.system, which loading could run)")
    assert "\x1b" not in str(e.value) and "weights_only" not in str(e.value)


def test_garbage_in_torchvisions_cache_is_one_line(tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "seeded"))
    cached = tmp_path / "seeded" / "hub" / "checkpoints" / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UserError) as e:
        build_backbone("resnet18", 256, "imagenet")
    msg = str(e.value)
    assert msg.startswith(f"model.backbone_weights=imagenet ({cached}): unreadable, delete it to download it "
                          "again: "), msg
    assert "\n" not in msg and "\x1b" not in msg


def test_import_hidden_dim_is_capped():
    with pytest.raises(UserError, match=r"^--hidden-dim 100000000: must be an integer in 1..4096 "
                                        r"\(the range of model.hidden_dim\)$"):
        import_torchvision_retinanet({}, hidden_dim=100_000_000)


# --------------------------------------------------------------- anchors search, resume
def test_anchor_search_refuses_a_dataset_with_another_class_count(tmp_path):
    data = type("Data", (), {"cat_ids": [1, 2], "ann_file": tmp_path / "val.json"})()
    model = tiny_detector()
    with pytest.raises(UserError) as e:
        check_classes(model, data, "best.pt")
    assert str(e.value) == (f"{tmp_path / 'val.json'}: has 2 categories but checkpoint best.pt was trained for 3 "
                            "(class0, class1, class2)")


def test_anchors_search_cli_refuses_a_dataset_with_another_class_count(capsys, tmp_path, model_ckpt):
    data = write_synth_dataset(tmp_path / "two", 2, synth_config("default", seed=0, num_classes=2), progress=False)
    code, _, err = cli(capsys, "anchors", "search", "--checkpoint", model_ckpt, "--data", data,
                       "--out", tmp_path / "best.yaml", "--device", "cpu")
    assert code == 2 and err == [f"metaanchor anchors: error: {data / 'annotations.json'}: has 2 categories but "
                                 f"checkpoint {model_ckpt} was trained for 3 (a, b, c)"]
    assert not (tmp_path / "best.yaml").exists()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = write_synth_dataset(root / "d", 4, synth_config("default", seed=0), progress=False)
    args = ["train", "--no-progress", "--out", str(root / "run"), f"data.train={data}", *TINY, "solver.max_iter=2",
            "checkpoint.period=2"]
    from metaanchor.cli import main

    assert main(args) == 0
    return root / "run" / "last.pt", args


@pytest.mark.parametrize("case, detail", [
    ("buffer_shape", "optimizer state momentum_buffer has shape (1,), its parameter (16, 3, 3, 3)"),
    ("lr_text", "optimizer param group lr='fast' is not a finite number"),
    ("groups", "loaded state dict has a different number of parameter groups"),
    ("state_list", "'list' object has no attribute 'items'"),
])
def test_resume_with_malformed_optimizer_state_is_one_line(trained_run, tmp_path, capsys, case, detail):
    good, args = trained_run
    run = tmp_path / "run"
    run.mkdir()
    payload = torch.load(good, weights_only=True)
    opt = payload["optimizer"]
    if case == "buffer_shape":
        for state in opt["state"].values():
            state["momentum_buffer"] = torch.zeros(1)
    elif case == "lr_text":
        opt["param_groups"][0]["lr"] = "fast"
    elif case == "groups":
        opt["param_groups"] = opt["param_groups"] * 3
    else:
        opt["state"] = [1, 2]
    torch.save(payload, run / "last.pt")
    before = sha(run / "last.pt")
    argv = ["train", "--resume"] + [str(run) if a.endswith("run") else "solver.max_iter=3" if a.startswith(
        "solver.max_iter") else a for a in args[1:]]
    code, _, err = cli(capsys, *argv)
    assert code == 2 and len(err) == 1, err
    assert err[0].endswith(f"checkpoint {run / 'last.pt'}: training state does not fit this run ({detail})"), err
    assert sha(run / "last.pt") == before
