import pytest

from metaanchor.config import DEFAULTS, load_config, parse_override
from metaanchor.errors import ConfigError


def test_overrides_are_typed_and_applied(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("solver:\n  max_iter: 50\nanchors:\n  train: 2x3\n")
    cfg = load_config(f, ["solver.lr=0.5", "model.head=predefined", "anchors.eval=[1x1, 5x5]", "solver.amp=false"])
    assert cfg["solver"]["max_iter"] == 50 and cfg["solver"]["lr"] == 0.5
    assert cfg["anchors"]["train"] == "2x3" and cfg["anchors"]["eval"] == ["1x1", "5x5"]
    assert cfg["model"]["head"] == "predefined" and cfg["solver"]["amp"] is False
    assert DEFAULTS["solver"]["max_iter"] == 1000  # defaults untouched


def test_anchor_preset_override_stays_a_string():
    assert parse_override("anchors.train=3x3") == ("anchors.train", "3x3")


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
