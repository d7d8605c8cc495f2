import pytest

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
