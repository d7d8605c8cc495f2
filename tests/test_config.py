
import pytest
from conftest import assert_user_error

from metaanchor.config import default_config, load_config
from metaanchor.errors import ConfigError


def test_overrides_are_typed_and_applied(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("solver:\n  max_iter: 50\nanchors:\n  train: 2x3\n")
    cfg = load_config(f, ["solver.lr=0.5", "model.head=predefined", "anchors.eval=[1x1, 5x5]", "solver.amp=false"])
    assert cfg["solver"]["max_iter"] == 50 and cfg["solver"]["lr"] == 0.5
    assert cfg["anchors"]["train"] == "2x3" and cfg["anchors"]["eval"] == ["1x1", "5x5"]
    assert cfg["model"]["head"] == "predefined" and cfg["solver"]["amp"] is False
    assert default_config()["solver"]["max_iter"] == 1000  # defaults untouched


@pytest.mark.parametrize("override,fragment", [
    ("solver.max_itr=5", "unknown config key 'solver.max_itr'; allowed: solver.amp"),
    ("solver.max_iter=abc", "config key solver.max_iter: expected int, got 'abc'"),
    ("solver.max_iter=1.5", "expected int, got 1.5"),
    ("model.head=yolo", "model.head: 'yolo' is not one of metaanchor, metaanchor-dd, predefined"),
    ("solver.amp=3", "solver.amp: expected bool"),
    ("noequals", "expected KEY=VALUE"),
])
def test_bad_overrides_name_key_and_allowed_values(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert fragment in str(e.value)


def test_bad_config_file_names_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  hed: metaanchor\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'model.hed'"):
        load_config(f)
    f.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="c.yaml: invalid YAML"):
        load_config(f)
    with pytest.raises(ConfigError, match="nope.yaml: not found"):
        load_config(tmp_path / "nope.yaml")


def test_channels_last_is_true_false_or_auto():
    from metaanchor.config import load_config

    assert load_config(None, [])["solver"]["channels_last"] is None  # auto: NHWC on CUDA only
    assert load_config(None, ["solver.channels_last=false"])["solver"]["channels_last"] is False
    with pytest.raises(ConfigError) as e:
        load_config(None, ["solver.channels_last=3"])
    assert str(e.value) == "config key solver.channels_last: expected bool or null, got 3"


def test_auto_channels_last_trains_nchw_on_cpu(synth_dirs, tmp_path):
    from conftest import TINY

    from metaanchor.config import load_config
    from metaanchor.engine.train import Trainer

    train, _ = synth_dirs
    for value, expected in (("null", False), ("true", True)):
        cfg = load_config(None, [f"data.train={train}", f"solver.channels_last={value}", *TINY])
        assert Trainer(cfg, tmp_path / value, progress=False).model._channels_last is expected


@pytest.mark.parametrize("yaml_text, fragments", [
    ("model:\n  hed: metaanchor\n", ["unknown config key 'model.hed'; allowed: model.anchor_base, model.arch, "
                                     "model.backbone"]),
    ("solver:\n  max_iter: ten\n", ["config key solver.max_iter: expected int, got 'ten'"]),
    ("solver: [1, 2]\n", ["unknown config key 'solver'"]),
    ("checkpoint:\n  period: 0\n", ["config key checkpoint.period: 0 is out of range; allowed: > 0"]),
    ("solver:\n  steps: [0.5, x]\n", ["config key solver.steps: item 'x' is not a float"]),
    ("anchors:\n  train: scales=1,-2\n", ["config key anchors.train: anchor SPEC 'scales=1,-2': scale '-2'"]),
    ("model:\n  bg_iou: 0.7\n", ["model.bg_iou=0.7 and model.fg_iou=0.5"]),
    ("model: {head: yolo}\n", ["model.head: 'yolo' is not one of metaanchor, metaanchor-dd, predefined"]),
])
def test_bad_config_file_is_one_line_naming_file_and_key(capsys, tmp_path, yaml_text, fragments):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml_text)
    assert_user_error(capsys, ["train", "--config", f, "--out", tmp_path / "run"], *fragments)


@pytest.mark.parametrize("args, fragment", [
    (["solver.max_iter="], "config key solver.max_iter: expected int, got no value"),
    (["log.period=0"], "config key log.period: 0 is out of range"),
    (["input.hflip=1.5"], "config key input.hflip: 1.5 is out of range; allowed: in 0..1"),
    (["solver.lr=.nan"], "config key solver.lr: nan is not a finite number"),
    (["anchors.eval=[3x3, 2y2]"], "config key anchors.eval: anchor SPEC '2y2'"),
    (["device=tpu", "data.train=DATA"], "device='tpu': expected auto, cpu, cuda or cuda:N"),
    (["data.train=/nonexistent/ds"], "/nonexistent/ds: no such dataset folder"),
])
def test_bad_train_override_is_one_line(capsys, tmp_path, dataset, args, fragment):
    args = [a.replace("DATA", str(dataset)) for a in args]
    assert_user_error(capsys, ["train", "--no-progress", "--out", tmp_path / "run", *args], fragment)


def test_a_text_option_keeps_its_command_line_text():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["anchors.train=0x3"])  # YAML alone would read the hex number 3
    assert str(e.value).startswith("config key anchors.train: anchor SPEC '0x3':")
    cfg = load_config(None, ["model.backbone_weights=123", "anchors.eval=[1x1, 5x5]", "input.augment=null"])
    assert cfg["model"]["backbone_weights"] == "123" and cfg["anchors"]["eval"] == ["1x1", "5x5"]
    assert cfg["input"]["augment"] is None


def test_exponent_numbers_without_a_dot_are_numbers_in_overrides_and_files(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("solver:\n  lr: 2e-3\n")
    cfg = load_config(path, ["model.anchor_base=4E0"])
    assert cfg["solver"]["lr"] == 0.002 and cfg["model"]["anchor_base"] == 4.0
    with pytest.raises(ConfigError, match=r"config key solver.lr: expected float, got '2e-3x'"):
        load_config(None, ["solver.lr=2e-3x"])
