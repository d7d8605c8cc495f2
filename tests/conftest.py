import json

import pytest
import torch
from hypothesis import settings
from hypothesis import strategies as st

from metaanchor.data.synth import synth_config, write_synth_dataset

# Property tests explore the same examples on every run, so CI cannot fail on a new random draw.
settings.register_profile("repeatable", derandomize=True)
settings.load_profile("repeatable")

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synth_dirs(tmp_path_factory):
    """A small synthetic train/val pair on disk (COCO layout), shared by the session."""
    root = tmp_path_factory.mktemp("synth")
    train = write_synth_dataset(root / "train", 48, synth_config("default", seed=0), progress=False)
    val = write_synth_dataset(root / "val", 16, synth_config("default", seed=1), progress=False)
    return train, val


def tiny_detector(head="metaanchor", anchors="3x3", **kw):
    from metaanchor.families.retinanet import RetinaNetDetector as Detector

    torch.manual_seed(0)
    args = dict(num_classes=3, backbone="tiny", head=head, anchors=anchors, fpn_channels=16, head_convs=1,
                hidden_dim=8, min_size=128, max_size=128)
    return Detector(**(args | kw))


# Small, fast model/training overrides for CLI tests.
TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
        "input.size=64", "solver.batch_size=2", "device=cpu", "log.period=1"]


def cli(capsys, *args):
    """Run the CLI in-process: (exit code, stdout, stderr lines)."""
    from metaanchor.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


@pytest.fixture(scope="module")
def model_ckpt(tmp_path_factory):
    """An untrained tiny RetinaNet checkpoint (3 classes a, b, c)."""
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    tiny_detector(class_names=["a", "b", "c"]).save(path)
    return path


def assert_same_final_weights(reference, resumed, iteration: int) -> None:
    """Two checkpoints (an uninterrupted run and an interrupted-then-resumed one) end at ``iteration``
    with bit-identical weights."""
    full = torch.load(reference, weights_only=True)
    cut = torch.load(resumed, weights_only=True)
    assert cut["iteration"] == full["iteration"] == iteration
    assert full["model"].keys() == cut["model"].keys()
    for k in full["model"]:
        assert torch.equal(full["model"][k], cut["model"][k]), k


@pytest.fixture(scope="module")
def small_objects(tmp_path_factory):
    """Boxes of 12-32 px only: no large objects, so APl and ARl are undefined."""
    return write_synth_dataset(tmp_path_factory.mktemp("small") / "ds", 6, synth_config("small", seed=5),
                               progress=False)


CAT_IDS = [1, 7, 90]


@pytest.fixture(scope="module")
def odd_ids_dataset(tmp_path_factory):
    """A 4-image dataset whose category ids are 1, 7, 90 and whose image ids are 13, 23, 33, 43."""
    root = write_synth_dataset(tmp_path_factory.mktemp("odd") / "ds", 4, synth_config("default", seed=4),
                               progress=False)
    data = json.loads((root / "annotations.json").read_text())
    cat = {c["id"]: CAT_IDS[k] for k, c in enumerate(data["categories"])}
    img = {im["id"]: 10 * im["id"] + 3 for im in data["images"]}
    for c in data["categories"]:
        c["id"] = cat[c["id"]]
    for im in data["images"]:
        im["id"] = img[im["id"]]
    for a in data["annotations"]:
        a["category_id"], a["image_id"] = cat[a["category_id"]], img[a["image_id"]]
    (root / "annotations.json").write_text(json.dumps(data))
    return root


@pytest.fixture(scope="module")
def odd_ckpt(tmp_path_factory):
    """A checkpoint that keeps the dataset's category ids; score_thresh 0 so an untrained model detects."""
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    tiny_detector(class_names=["circle", "square", "triangle"], category_ids=CAT_IDS, score_thresh=0.0).save(path)
    return path


def assert_user_error(capsys, args, *fragments):
    code, _, err = cli(capsys, *args)
    err = [e for e in err if not e.startswith("warning: ")]  # a tiny run's setting warnings precede its error
    assert code == 2, err
    assert len(err) == 1, err  # one line, no traceback
    assert err[0].startswith(f"metaanchor {args[0]}: error: ")
    for f in fragments:
        assert str(f) in err[0], err[0]
    return err[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synth_dataset(tmp_path_factory.mktemp("bad") / "ds", 4, synth_config("default", seed=2),
                               progress=False)


@pytest.fixture
def copy_of(dataset, tmp_path):
    """A fresh writable copy of the small dataset."""
    import shutil

    dst = tmp_path / "ds"
    shutil.copytree(dataset, dst)
    return dst


def ann(folder):
    return json.loads((folder / "annotations.json").read_text())


def write_ann(folder, data):
    (folder / "annotations.json").write_text(json.dumps(data))


def eval_args(ckpt_path, data, *extra):
    return ["eval", "--checkpoint", ckpt_path, "--data", data, "--device", "cpu", *extra]


GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8)
