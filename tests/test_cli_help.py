"""The command line explains itself: help on every option, defaults and choices shown, help for bare commands."""

import argparse

import pytest
import yaml
from conftest import cli

from metaanchor.cli.main import build_parser


def parsers(parser=None, prog="metaanchor"):
    """(prog, parser) for the top-level parser and every sub-command, depth first."""
    parser = parser or build_parser()
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{prog} {name}")


ALL = list(parsers())


def test_every_command_and_option_has_help_text():
    missing = [f"{prog} {a.option_strings or a.dest}" for prog, p in ALL for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not (a.help or "").strip()]
    assert missing == []


@pytest.mark.parametrize("prog", [prog for prog, _ in ALL])
def test_help_shows_every_choice_and_default(prog):
    parser = dict(ALL)[prog]
    text = " ".join(parser.format_help().split())
    for a in parser._actions:
        if a.choices and not isinstance(a, argparse._SubParsersAction):
            assert "{" + ",".join(map(str, a.choices)) + "}" in text, (prog, a.dest)
        if a.option_strings and a.default not in (None, False, [], argparse.SUPPRESS):
            shown = " ".join(map(str, a.default)) if isinstance(a.default, (list, tuple)) else str(a.default)
            assert "default" in " ".join(a.help.split()).lower() or f"(default: {shown})" in text, (prog, a.dest)


def test_bare_metaanchor_prints_help(capsys):
    code, out, _ = cli(capsys)
    assert code == 0 and out.startswith("usage: metaanchor") and "train" in out and "predict" in out


@pytest.mark.parametrize("args", [["anchors"], ["data"], ["predict"], ["export"]])
def test_a_bare_command_that_needs_arguments_prints_its_help(capsys, args):
    with pytest.raises(SystemExit) as e:
        cli(capsys, *args)
    out, err = capsys.readouterr()
    assert e.value.code == 2 and out.startswith(f"usage: metaanchor {args[0]}") and "options:" in out and err == ""


def test_a_command_missing_one_argument_still_says_which_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        cli(capsys, "predict", "--out", "x")
    out, err = capsys.readouterr()
    assert e.value.code == 2 and out == ""
    assert err == "metaanchor predict: error: the following arguments are required: --checkpoint, IMAGE\n"


def test_show_config_prints_the_resolved_config(capsys):
    code, out, _ = cli(capsys, "train", "--show-config", "--config", "demo", "solver.max_iter=7")
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["solver"]["max_iter"] == 7 and cfg["anchors"]["train"] == "3x3"
    assert set(cfg) >= {"data", "anchors", "input", "solver", "eval", "log", "checkpoint", "model"}


def test_overrides_may_come_before_and_after_options(capsys):
    code, out, _ = cli(capsys, "train", "--show-config", "solver.max_iter=7", "--out", "x", "model.head_convs=1")
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["solver"]["max_iter"] == 7 and cfg["model"]["head_convs"] == 1


def test_an_unknown_option_after_overrides_is_still_refused(capsys):
    with pytest.raises(SystemExit) as e:
        cli(capsys, "train", "solver.max_iter=7", "--bogus")
    assert e.value.code == 2 and capsys.readouterr().err == "metaanchor: error: unrecognized arguments: --bogus\n"
