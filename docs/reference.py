"""Write the CLI and config references (docs/cli.md, docs/config.md) from the code, so they cannot drift.

    python docs/reference.py          # rewrite both files
    python docs/reference.py --check  # exit 1 when a committed file differs from the code (the test suite runs it)

The CLI reference walks the argparse parsers of ``metaanchor.cli.main``; the config reference walks the config
dataclasses (``metaanchor.config`` sections and each family's ``model`` section), taking each key's default and
allowed values from its ``option`` and its meaning from the comment written beside the field.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI_MD, CONFIG_MD = HERE / "cli.md", HERE / "config.md"


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(value) -> str:
    if value is None or value is argparse.SUPPRESS:
        return ""
    if isinstance(value, (list, tuple)):
        return "`" + " ".join(map(str, value)) + "`" if value else ""
    return f"`{value}`"


def _parsers(parser, prog):
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                sub._summary = helps.get(name, "")
                yield from _parsers(sub, f"{prog} {name}")


def cli_reference() -> str:
    from metaanchor.cli.main import build_parser

    out = ["# Command-line reference", "",
           "Generated from the code by `python docs/reference.py`; `metaanchor COMMAND --help` prints the same.", ""]
    for prog, parser in _parsers(build_parser(), "metaanchor"):
        if prog == "metaanchor":
            continue
        out += [f"## {prog}", ""]
        text = parser.description or getattr(parser, "_summary", "")
        if text:
            out += [_cell(text), ""]
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            out += ["Sub-commands: " + ", ".join(f"`{n}`" for n in subs[0].choices) + ".", ""]
            continue
        out += ["| argument | meaning | default |", "|---|---|---|"]
        for a in parser._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            name = ", ".join(a.option_strings) or (a.metavar or a.dest)
            if a.choices:
                name += " {" + ",".join(map(str, a.choices)) + "}"
            required = " (required)" if a.required and a.option_strings else ""
            shown_in_help = "default" in (a.help or "").lower()
            default = "" if isinstance(a.default, bool) or shown_in_help else _default(a.default)
            help_text = (a.help or "") % {"default": a.default} if "%(default)" in (a.help or "") else (a.help or "")
            out.append(f"| `{_cell(name)}` | {_cell(help_text)}{required} | {default} |")
        if parser.epilog:
            out += ["", _cell(parser.epilog)]
        out.append("")
    return "\n".join(out)


def field_comments(cls: type) -> dict[str, str]:
    """{field name: the comments on its lines and on the comment lines right above it} for one dataclass."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above, n = [], node.lineno - 1
            while n >= 1 and n in comments and lines[n - 1].strip().startswith("#"):
                above.insert(0, comments[n])
                n -= 1
            beside = [comments[i] for i in range(node.lineno, node.end_lineno + 1) if i in comments]
            found[node.target.id] = " ".join(above + beside)
    return found


def _allowed(rules: dict) -> str:
    if rules.get("choices") is not None:
        choices = rules["choices"]
        return ", ".join(f"`{c}`" for c in (choices() if callable(choices) else choices))
    kind, low, high = rules["kind"].__name__, rules.get("low"), rules.get("high")
    if rules.get("items"):
        return f"list of {rules['items'].__name__}"
    if low is None and high is None:
        return kind
    if high is None:
        return f"{kind} {'>' if rules.get('low_open') else '>='} {low}"
    if low is None:
        return f"{kind} {'<' if rules.get('high_open') else '<='} {high}"
    left, right = "(" if rules.get("low_open") else "[", ")" if rules.get("high_open") else "]"
    return f"{kind} in {left}{low}, {high}{right}"


def section_table(cls: type, prefix: str, only: set[str] | None = None) -> list[str]:
    notes = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass) and "__annotations__" in klass.__dict__:
            notes.update(field_comments(klass))
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        shown = "null" if default is None else ("`[]`" if default == [] else _default(default))
        meaning = _cell(notes.get(f.name, ""))
        rows.append(f"| `{prefix}{f.name}` | {shown} | {_cell(_allowed(f.metadata))} | {meaning} |")
    return rows


def config_reference() -> str:
    from metaanchor import config
    from metaanchor.families import ARCHS, detector_class
    from metaanchor.families.base import ModelConfig

    out = ["# Config reference", "",
           "Generated from the code by `python docs/reference.py`. Every key can be set in a YAML config "
           "(`--config FILE` or a shipped name) or on the command line as `KEY=VALUE`; "
           "`metaanchor train --show-config [--config NAME] [KEY=VALUE ...]` prints the values a run would use.",
           "", "## top level", "", *section_table(config.RunConfig, ""), ""]
    out += ["## data", "", *section_table(config.DataConfig, "data."), ""]
    for name, cls in config.SECTIONS.items():
        if name != "data":
            out += [f"## {name}", "", *section_table(cls, f"{name}."), ""]
    common = {f.name for f in dataclasses.fields(ModelConfig)}
    out += ["## model (every family)", "", *section_table(ModelConfig, "model."), ""]
    for arch in ARCHS:
        cls = detector_class(arch).Config
        own = {f.name for f in dataclasses.fields(cls)} - common
        out += [f"## model (`model.arch={arch}`)", "", *section_table(cls, "model.", own), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--check", action="store_true", help="exit 1 when a committed file differs from the code")
    check = args.parse_args(argv).check
    stale = []
    for path, text in ((CLI_MD, cli_reference()), (CONFIG_MD, config_reference())):
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python docs/reference.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
