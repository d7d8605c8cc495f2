"""metaanchor.readers: every limit, and the exact one-line messages."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaanchor import readers
from metaanchor.errors import ConfigError, UserError
from metaanchor.readers import load_json, load_yaml, read_text

LIMIT = "(a limit against {}; raise it with the environment variable METAANCHOR_{}=N)"


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The 'billion laughs' YAML: each level lists the previous one ``width`` times (width**levels leaves)."""
    lines = ["a0: &a0 [lol]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_by_counting_aliases():
    assert len(alias_bomb()) < 1024
    with pytest.raises(UserError) as e:
        load_yaml(alias_bomb(), "config file c.yaml")
    assert str(e.value) == ("config file c.yaml: more than 64 YAML aliases "
                            + LIMIT.format("alias bombs", "MAX_YAML_ALIASES"))


def test_few_aliases_expanding_to_many_nodes_are_refused():
    text = alias_bomb(levels=30, width=2)  # 60 aliases, 2**30 leaves
    with pytest.raises(UserError) as e:
        load_yaml(text, "x.yaml")
    assert str(e.value) == ("x.yaml: YAML aliases expand to more than 1000000 nodes "
                            + LIMIT.format("alias bombs", "MAX_YAML_NODES"))


def test_limit_errors_keep_the_callers_error_class():
    from metaanchor.errors import AnchorSpecError  # a ValueError too: not to be taken for a constructor's

    with pytest.raises(AnchorSpecError) as e:
        load_yaml(alias_bomb(), "anchor file a.yaml", AnchorSpecError)
    assert str(e.value).startswith("anchor file a.yaml: more than 64 YAML aliases (")


def test_a_few_aliases_are_fine():
    assert load_yaml("a: &x [1, 2]\nb: *x\n", "x.yaml") == {"a": [1, 2], "b": [1, 2]}


def test_recursive_alias_is_an_error_not_a_hang():
    with pytest.raises(UserError) as e:
        load_yaml("x: &a [1, *a]\n", "c.yaml")
    assert str(e.value) == "c.yaml: a YAML alias refers to a node that contains it (recursive alias)"


@pytest.mark.parametrize("text", ["x: " + "[" * 5000 + "]" * 5000,
                                  "x:\n" + "".join(" " * i + "- \n" for i in range(70))])
def test_deep_yaml_is_refused(text):
    with pytest.raises(UserError) as e:
        load_yaml(text, "c.yaml")
    assert str(e.value) == "c.yaml: nested deeper than 64 levels " + LIMIT.format("stack exhaustion",
                                                                                  "MAX_NESTING_DEPTH")


def test_deep_yaml_through_aliases_is_refused():
    inner = "[" * 40 + "1" + "]" * 40
    text = f"a: &a {inner}\nb: " + "[" * 40 + "*a" + "]" * 40 + "\n"
    with pytest.raises(UserError, match="nested deeper than 64 levels"):
        load_yaml(text, "c.yaml")


@pytest.mark.parametrize("number", ["1" * 5000, "1" * 400 + ".5", "0x" + "f" * 200])
def test_long_yaml_numbers_are_refused(number):
    with pytest.raises(UserError) as e:
        load_yaml(f"x: {number}\n", "c.yaml")
    assert str(e.value) == (f"c.yaml: number {number[:20]}... ({len(number)} characters) has more than 100 "
                            "characters " + LIMIT.format("numbers too long to convert", "MAX_NUMBER_CHARS"))


def test_invalid_yaml_names_line_and_column():
    with pytest.raises(ConfigError) as e:
        load_yaml("a: [1,\nb: 2", "c.yaml", ConfigError)
    assert str(e.value).startswith("c.yaml: invalid YAML at line 2 column")


def test_yaml_limits_are_raised_by_the_environment(monkeypatch):
    monkeypatch.setenv("METAANCHOR_MAX_YAML_ALIASES", "100")
    assert len(load_yaml(alias_bomb(levels=2, width=40), "x.yaml")["a2"]) == 40
    monkeypatch.setenv("METAANCHOR_MAX_YAML_ALIASES", "lots")
    with pytest.raises(UserError) as e:
        load_yaml("a: &x 1\nb: *x\n", "x.yaml")
    assert str(e.value) == "METAANCHOR_MAX_YAML_ALIASES='lots': must be a positive integer"


def test_deep_json_is_refused_without_recursion_error():
    with pytest.raises(UserError) as e:
        load_json("[" * 100_000 + "]" * 100_000, "a.json")
    assert str(e.value) == "a.json: nested deeper than 64 levels " + LIMIT.format("stack exhaustion",
                                                                                  "MAX_NESTING_DEPTH")
    with pytest.raises(UserError, match="nested deeper than 64 levels"):
        load_json("[" * 65 + "]" * 65, "a.json")
    assert load_json("[" * 64 + "]" * 64, "a.json") is not None


@pytest.mark.parametrize("number", ["1" * 4301, "1" * 400 + ".0", "-" + "9" * 200])
def test_long_json_numbers_are_refused(number):
    with pytest.raises(UserError) as e:
        load_json(f'{{"x": {number}}}', "a.json")
    assert str(e.value) == (f"a.json: number {number[:20]}... ({len(number)} characters) has more than 100 "
                            "characters " + LIMIT.format("numbers too long to convert", "MAX_NUMBER_CHARS"))


def test_json_nan_infinity_and_overflow():
    with pytest.raises(UserError) as e:
        load_json('{"x": NaN}', "a.json")
    assert str(e.value) == "a.json: NaN is not a JSON number"
    with pytest.raises(UserError) as e:
        load_json("[1e999]", "a.json")
    assert str(e.value) == "a.json: number 1e999 is out of the range of a float"
    assert load_json('[Infinity]', "a.json", allow_nan=True) == [float("inf")]


def test_malformed_json_names_line_and_column():
    with pytest.raises(UserError) as e:
        load_json('{"a":\n  [1,]}', "a.json")
    assert str(e.value) == "a.json: malformed JSON at line 2 column 6: Expecting value"


def test_read_text_refuses_fifo_folder_and_device(tmp_path):
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)  # no writer: opening it blocking would hang this test
    with pytest.raises(UserError) as e:
        read_text(fifo, f"annotation file {fifo}", 100)
    assert str(e.value) == f"annotation file {fifo}: is a FIFO, not a regular file"
    with pytest.raises(UserError) as e:
        read_text(tmp_path, str(tmp_path), 100)
    assert str(e.value) == f"{tmp_path}: is a folder, not a regular file"
    with pytest.raises(UserError) as e:
        read_text("/dev/zero", "/dev/zero", 100)
    assert str(e.value) == "/dev/zero: is a character device, not a regular file"
    with pytest.raises(UserError) as e:
        read_text(tmp_path / "nope", "nope", 100)
    assert str(e.value) == "nope: not found"


def test_read_text_checks_size_before_reading_and_utf8(tmp_path, monkeypatch):
    f = tmp_path / "c.yaml"
    f.write_bytes(b"x" * 101)
    with pytest.raises(UserError) as e:
        read_text(f, "config file c.yaml", 100)
    assert str(e.value) == "config file c.yaml: 101 bytes, more than 100 (a limit against memory exhaustion)"
    monkeypatch.setattr(readers, "MAX_CONFIG_BYTES", 100)
    with pytest.raises(UserError) as e:
        read_text(f, "config file c.yaml", "MAX_CONFIG_BYTES")
    assert str(e.value) == ("config file c.yaml: 101 bytes, more than 100 "
                            + LIMIT.format("memory exhaustion", "MAX_CONFIG_BYTES"))
    monkeypatch.setenv("METAANCHOR_MAX_CONFIG_BYTES", "1000")
    assert read_text(f, "c", "MAX_CONFIG_BYTES") == "x" * 101
    f.write_bytes("a: é\n".encode() + b"\xff\xfe")
    with pytest.raises(UserError) as e:
        read_text(f, "config file c.yaml", 100)
    assert str(e.value) == r"config file c.yaml: not UTF-8 text (byte 6: b'\xff')"


# ----------------------------------------------------------------------------- hostile documents, generated
def _nested(depth: int, left: str, right: str, leaf: str) -> str:
    return left * depth + leaf + right * depth


hostile_yaml = st.one_of(
    st.integers(1, 3000).map(lambda d: "x: " + _nested(d, "[", "]", "1")),
    st.integers(1, 3000).map(lambda d: "x: " + _nested(d, "{a: ", "}", "1")),
    st.tuples(st.integers(1, 12), st.integers(1, 12)).map(lambda lw: alias_bomb(*lw)),
    st.integers(1, 6000).map(lambda n: f"x: {'7' * n}"),
    st.integers(1, 600).map(lambda n: f"x: {'7' * n}.5e3"),
    st.sampled_from(["x: &a [*a]", "&a {x: *a}", "x: *nope", "x: !!python/object:os.system {}", "x: 2020-13-45"]),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.text(max_size=200),
)

hostile_json = st.one_of(
    st.integers(1, 3000).map(lambda d: _nested(d, "[", "]", "1")),
    st.integers(1, 3000).map(lambda d: _nested(d, '{"a": ', "}", "1")),
    st.integers(1, 6000).map(lambda n: "[" + "7" * n + "]"),
    st.integers(1, 600).map(lambda n: "[" + "7" * n + ".5]"),
    st.sampled_from(["NaN", "[Infinity]", "-Infinity", "1e400", "[1", "", "\ufeff{}"]),
    st.text(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                 | st.text(max_size=5), lambda kids: st.lists(kids, max_size=4)
                 | st.dictionaries(st.text(max_size=3), kids, max_size=4), max_leaves=30).map(json.dumps),
)


@settings(max_examples=150, deadline=None)
@given(hostile_yaml)
def test_load_yaml_gives_a_value_or_a_user_error(text):
    try:
        load_yaml(text, "h.yaml")
    except UserError as e:
        assert str(e).startswith("h.yaml: ") and "\n" not in str(e)


@settings(max_examples=150, deadline=None)
@given(hostile_json)
def test_load_json_gives_a_value_or_a_user_error(text):
    try:
        load_json(text, "h.json")
    except UserError as e:
        assert str(e).startswith("h.json: ") and "\n" not in str(e)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(hostile_yaml.map(str.encode), hostile_json.map(str.encode), st.binary(max_size=300)))
def test_every_file_reader_gives_a_result_or_a_user_error(tmp_path, data):
    from metaanchor.config import load_config, parse_value
    from metaanchor.data.class_names import read_class_names
    from metaanchor.data.coco_json import load_coco_json
    from metaanchor.geometry.anchors import AnchorSet

    for name, read in (("c.yaml", load_config), ("a.yaml", AnchorSet.parse), ("a.json", AnchorSet.parse),
                       ("annotations.json", load_coco_json), ("classes.txt", read_class_names)):
        path = tmp_path / name
        path.write_bytes(data)
        try:
            read(str(path) if read is AnchorSet.parse else path)
        except UserError as e:
            assert "\n" not in str(e)
    try:
        parse_value(data.decode("utf-8", "replace"))
    except UserError as e:
        assert str(e).startswith("override: ")
