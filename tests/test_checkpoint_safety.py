"""Checkpoints hold only tensors and plain values, and loading one never runs code.

A checkpoint whose pickle would create a marker folder when unpickled is refused, with exit code 2 and
one line, by every entry point that reads checkpoints; the marker never appears. Checkpoints written by
training and by ``Detector.save`` load with ``torch.load(weights_only=True)``. They get the user's
umask, and a failed write (disk full, read-only folder) is one line with exit code 2 and no temp file.
"""

import errno
import os
import stat

import pytest
import torch
from conftest import tiny_detector

from metaanchor import checkpoint as ckpt
from metaanchor.cli import main
from metaanchor.config import load_config
from metaanchor.data.synth import synth_config, write_synth_dataset
from metaanchor.engine import train as train_mod
from metaanchor.errors import CheckpointError, UserError
from metaanchor.families.retinanet import RetinaNetDetector as Detector

TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
        "input.size=64", "solver.batch_size=2", "device=cpu", "log.period=1", "checkpoint.period=2"]


class Payload:
    """Unpickling this calls os.makedirs(marker): a stand-in for any code a pickle can run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def evil_checkpoint(path, marker):
    """A checkpoint that looks right (format, version, weights) but carries code in its model config."""
    payload = tiny_detector().checkpoint_payload()
    payload["model_config"] = dict(payload["model_config"], backbone=Payload(marker))
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synth_dataset(tmp_path_factory.mktemp("ckdata") / "d", 4, synth_config("default", seed=0),
                               progress=False)


def test_the_payload_would_run_code_if_loaded_unsafely(tmp_path):
    marker = tmp_path / "ran"
    torch.load(evil_checkpoint(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()  # proves the test payload is live, so its absence below means something


@pytest.mark.parametrize("entry", ["eval", "predict", "anchors search", "train --resume"])
def test_every_cli_entry_point_refuses_a_code_carrying_checkpoint(entry, data, tmp_path, capsys):
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    run.mkdir()
    evil = evil_checkpoint(run / "last.pt", marker)
    argv = {
        "eval": ["eval", "--checkpoint", str(evil), "--data", str(data), "--device", "cpu"],
        "predict": ["predict", "--checkpoint", str(evil), "--device", "cpu", "--out", str(tmp_path / "p"),
                    str(data / "images")],
        "anchors search": ["anchors", "search", "--checkpoint", str(evil), "--data", str(data),
                           "--device", "cpu", "--budget", "1", "--out", str(tmp_path / "a.yaml")],
        "train --resume": ["train", "--resume", "--no-progress", "--out", str(run), f"data.train={data}", *TINY,
                           "solver.max_iter=2"],
    }[entry]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(evil) in err and "not a tensors-only metaanchor checkpoint" in err, err
    assert "os.makedirs" in err or "posix.makedirs" in err or "makedirs" in err, err
    assert not marker.exists()


def test_the_api_refuses_a_code_carrying_checkpoint(tmp_path):
    marker = tmp_path / "ran"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match="not a tensors-only metaanchor checkpoint"):
        Detector.from_checkpoint(evil)
    with pytest.raises(CheckpointError, match="not a tensors-only"):
        ckpt.load(evil)
    assert not marker.exists()


def assert_plain(obj, where="payload"):
    """Only tensors and the plain types a weights-only load accepts; dicts are plain dicts."""
    if torch.is_tensor(obj):
        return
    assert obj is None or type(obj) in (bool, int, float, str, dict, list, tuple), f"{where}: {type(obj)}"
    if type(obj) is dict:
        for k, v in obj.items():
            assert_plain(k, f"{where} key")
            assert_plain(v, f"{where}[{k!r}]")
    elif type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            assert_plain(v, f"{where}[{i}]")


def test_detector_save_round_trips_through_a_weights_only_load(tmp_path):
    model = tiny_detector(anchors="2x3").eval()
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert_plain(payload)
    loaded = Detector.from_checkpoint(tmp_path / "m.pt")
    assert loaded.class_names == model.class_names and loaded.train_anchors == model.train_anchors
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = [torch.rand(3, 96, 80)]
    with torch.no_grad():
        out, out2 = model(x)[0], loaded(x)[0]
    for k in out:
        assert torch.equal(out[k], out2[k]), k


def test_a_training_checkpoint_is_tensors_only_and_resumes(data, tmp_path):
    cfg = load_config(None, [f"data.train={data}", *TINY, "solver.max_iter=3", "anchors.sample=true"])
    train_mod.train(cfg, tmp_path / "run", progress=False)
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert_plain(payload)
    assert payload["iteration"] == 3 and payload["optimizer"]["state"]
    cfg["solver"]["max_iter"] = 4  # --resume reads it all back through the weights-only path
    assert train_mod.train(cfg, tmp_path / "run", resume=True, progress=False)["iterations"] == 4


def test_plain_converts_containers_and_refuses_other_objects():
    import collections

    import numpy as np

    out = ckpt.plain({"a": collections.OrderedDict(x=torch.ones(1)), "b": np.float32(0.5), "c": (np.int64(3),),
                      "d": np.zeros(2)})
    assert type(out["a"]) is dict and type(out["b"]) is float and type(out["c"][0]) is int
    assert torch.is_tensor(out["d"])
    with pytest.raises(TypeError, match=r"checkpoint\['x'\]"):
        ckpt.plain({"x": object()})


def test_checkpoints_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        tiny_detector().save(tmp_path / "a.pt")
        os.umask(0o002)
        tiny_detector().save(tmp_path / "b.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.pt").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.pt").stat().st_mode) == 0o664


@pytest.mark.parametrize("where", ["torch.save", "os.replace"])
def test_a_full_disk_while_saving_is_one_line_and_leaves_no_temp_file(where, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "torch.save":
        monkeypatch.setattr(torch, "save", full)
    else:
        monkeypatch.setattr(os, "replace", full)
    with pytest.raises(UserError, match=f"cannot write {tmp_path / 'm.pt'}: No space left on device"):
        tiny_detector().save(tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def _failing(real, errno_, match):
    """``real`` that raises OSError(errno_) when its first path argument's name contains ``match``."""
    def fake(*args, **kwargs):
        target = args[1] if real is os.replace else args[0]
        if match in os.fspath(getattr(target, "name", target)):
            raise OSError(errno_, os.strerror(errno_))
        return real(*args, **kwargs)
    return fake


@pytest.mark.parametrize("what, culprit, err", [
    ("checkpoint data", "last.pt", errno.ENOSPC),  # torch.save into the temp file
    ("checkpoint rename", "last.pt", errno.EROFS),
    ("config.yaml", "config.yaml", errno.EROFS),
    ("metrics.csv", "metrics.csv", errno.ENOSPC),
])
def test_train_on_a_full_disk_or_read_only_folder_is_one_line_exit_2(what, culprit, err, data, tmp_path,
                                                                      monkeypatch, capsys):
    from pathlib import Path

    if what == "checkpoint data":
        def full(obj, f, *args, **kwargs):
            f.write(b"partial")
            raise OSError(err, os.strerror(err))
        monkeypatch.setattr(torch, "save", full)
    elif what in ("checkpoint rename", "config.yaml"):
        monkeypatch.setattr(os, "replace", _failing(os.replace, err, culprit))
    else:
        monkeypatch.setattr(Path, "open", _failing(Path.open, err, culprit))
    run = tmp_path / "run"
    argv = ["train", "--no-progress", "--out", str(run), f"data.train={data}", *TINY, "solver.max_iter=2"]
    assert main(argv) == 2
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("warning: ")]
    assert lines == [f"metaanchor train: error: cannot write {run / culprit}: {os.strerror(err)}"], lines
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    if what != "metrics.csv":
        assert not (run / culprit).exists()  # nothing partial where a complete file is expected


def test_an_unwritable_output_folder_is_one_line_exit_2(data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["train", "--no-progress", "--out", str(blocker / "run"), f"data.train={data}", *TINY, "solver.max_iter=1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"metaanchor train: error: cannot write {blocker / 'run'}: Not a directory", err
