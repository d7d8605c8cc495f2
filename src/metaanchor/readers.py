"""Bounded readers for every text file the package reads: configs, anchor files, annotations, labels.

A hostile or broken input file must end in a one-line ``UserError`` naming it, never in a hang, a
traceback or memory exhaustion. Hence:

* :func:`open_regular` / :func:`read_text` open regular files only (a FIFO would block forever,
  ``/dev/zero`` never ends) and check the size before reading; text must be UTF-8, and an error names
  the byte offset where it is not.
* :func:`load_yaml` is PyYAML's safe loader with a cap on aliases (against "billion laughs" bombs),
  on the nodes they expand to and on nesting depth; a recursive alias is an error.
* :func:`load_json` caps nesting depth and the length of numbers (Python refuses integers of more
  than 4300 digits with a ValueError) and refuses NaN and Infinity, which JSON does not have.

Each limit is a module constant below; the environment variable ``METAANCHOR_<NAME>`` (e.g.
``METAANCHOR_MAX_ANNOTATION_BYTES=4000000000``) raises it, and every message that reports a limit
says so.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from metaanchor.errors import UserError

# Bytes read into memory, per kind of file.
MAX_CONFIG_BYTES = 1_000_000  # a config file
MAX_ANNOTATION_BYTES = 2_000_000_000  # a COCO JSON annotation file (COCO train2017: 450 MB)
MAX_LABEL_BYTES = 10_000_000  # one VOC XML, YOLO label, classes.txt or split file
MAX_SIDECAR_BYTES = 1_000_000  # the build description written beside an exported model
# Structure of YAML and JSON documents.
MAX_YAML_ALIASES = 64  # alias uses (*name) in one YAML document
MAX_YAML_NODES = 1_000_000  # nodes of a YAML document with every alias expanded
MAX_NESTING_DEPTH = 64  # levels of nested lists and mappings
MAX_NUMBER_CHARS = 100  # characters of one number
MAX_CATEGORIES = 100_000  # classes of a dataset (each one is a channel of the detection head)

_ENV_PREFIX = "METAANCHOR_"
_PURPOSE = {"MAX_YAML_ALIASES": "alias bombs", "MAX_YAML_NODES": "alias bombs",
            "MAX_NESTING_DEPTH": "stack exhaustion", "MAX_NUMBER_CHARS": "numbers too long to convert"}
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def env_int(variable: str, default: int, high: int | None = None) -> int:
    """The positive integer (at most ``high``) in the environment variable ``variable``, or ``default`` when
    it is unset or blank; anything else is a one-line UserError naming the variable and what it takes."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else 0
    if value < 1 or (high is not None and value > high):
        allowed = "a positive integer" if high is None else f"an integer in 1..{high}"
        raise UserError(f"{variable}={text[:40]!r}: must be {allowed}")
    return value


def limit(name: str) -> int:
    """The limit ``name`` (a module constant such as ``"MAX_YAML_ALIASES"``), or the positive integer
    in the environment variable ``METAANCHOR_<name>`` when that is set."""
    return env_int(_ENV_PREFIX + name, globals()[name])


def over_limit(name: str, purpose: str | None = None) -> str:
    """The end of a message about limit ``name``: what it guards against and how to raise it."""
    return f"(a limit against {purpose or _PURPOSE.get(name, 'memory exhaustion')}; " \
           f"raise it with the environment variable {_ENV_PREFIX}{name}=N)"


def _not_regular(mode: int) -> str | None:
    return next((kind for test, kind in _KINDS if test(mode)), None if stat.S_ISREG(mode) else "not a file")


def irregular_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is not a regular file (``"a FIFO"``, ``"a folder"``, ...), following
    links; None for a regular file or one that cannot be stat'ed (its reader reports that)."""
    try:
        return _not_regular(os.stat(path).st_mode)
    except (OSError, ValueError):
        return None


def open_regular(path: str | os.PathLike, where: str, error: type[UserError] = UserError,
                 what: str = "a regular file") -> BinaryIO:
    """``path`` opened for binary reading, refusing anything but a regular file (``error``: ``{where}:
    is a FIFO, not {what}``). Opening never blocks (a FIFO is opened non-blocking, then refused);
    OSErrors such as FileNotFoundError pass through for the caller to word."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        kind = _not_regular(os.fstat(fd).st_mode)
        if kind is not None:
            raise error(f"{where}: is {kind}, not {what}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, where: str, max_bytes: int | str,
               error: type[UserError] = UserError) -> bytes:
    """The bytes of regular file ``path``; every failure is one line ``{where}: ...`` (``error``).

    ``max_bytes``: the most bytes read, or the name of a limit in this module (then the message says
    how to raise it). The size is checked before reading, and again while reading.
    """
    name = max_bytes if isinstance(max_bytes, str) else None
    cap = limit(name) if name else max_bytes
    try:
        with open_regular(path, where, error) as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(cap + 1) if size <= cap else b""
    except FileNotFoundError:
        raise error(f"{where}: not found") from None
    except OSError as e:
        raise error(f"{where}: cannot read: {e.strerror or e}") from None
    if size > cap or len(data) > cap:
        hint = over_limit(name, "memory exhaustion") if name else "(a limit against memory exhaustion)"
        raise error(f"{where}: {max(size, len(data))} bytes, more than {cap} {hint}")
    return data


def read_text(path: str | os.PathLike, where: str, max_bytes: int | str,
              error: type[UserError] = UserError) -> str:
    """The UTF-8 text of regular file ``path`` (:func:`read_bytes`); text that is not UTF-8 is an
    ``error`` naming the byte offset."""
    data = read_bytes(path, where, max_bytes, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})") from None


def _short(text: str, n: int = 20) -> str:
    return text if len(text) <= n else f"{text[:n]}... ({len(text)} characters)"


# ----------------------------------------------------------------------------------------------- YAML
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, counting alias uses and nesting depth while it composes the node graph."""

    def __init__(self, text: str, where: str, error: type[UserError]):
        super().__init__(text)
        self.where, self.error, self.aliases, self.depth = where, error, 0, 0

    def fail(self, message: str):
        raise self.error(f"{self.where}: {message}")

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > limit("MAX_YAML_ALIASES"):
                self.fail(f"more than {limit('MAX_YAML_ALIASES')} YAML aliases {over_limit('MAX_YAML_ALIASES')}")
        self.depth += 1
        try:
            if self.depth > limit("MAX_NESTING_DEPTH"):
                self.fail(f"nested deeper than {limit('MAX_NESTING_DEPTH')} levels "
                          f"{over_limit('MAX_NESTING_DEPTH')}")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _check_yaml_graph(loader: _BoundedLoader, root: yaml.Node) -> None:
    """Refuse a node graph whose aliases recurse, expand past MAX_YAML_NODES or nest past
    MAX_NESTING_DEPTH, and numbers longer than MAX_NUMBER_CHARS (before the constructor converts them)."""
    max_nodes, max_depth, max_chars = limit("MAX_YAML_NODES"), limit("MAX_NESTING_DEPTH"), limit("MAX_NUMBER_CHARS")
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, height)
    active: set[int] = set()

    def walk(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in active:
            loader.fail("a YAML alias refers to a node that contains it (recursive alias)")
        if key not in done:
            if depth > max_depth:
                loader.fail(f"nested deeper than {max_depth} levels {over_limit('MAX_NESTING_DEPTH')}")
            if isinstance(node, yaml.ScalarNode):
                if node.tag in _NUMBER_TAGS and len(node.value) > max_chars:
                    loader.fail(f"number {_short(node.value)} has more than {max_chars} characters "
                                f"{over_limit('MAX_NUMBER_CHARS')}")
                done[key] = (1, 1)
            else:
                active.add(key)
                children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) \
                    else node.value
                sizes = [walk(c, depth + 1) for c in children]
                active.discard(key)
                done[key] = (1 + sum(s for s, _ in sizes), 1 + max((h for _, h in sizes), default=0))
        size, height = done[key]
        if depth + height - 1 > max_depth:
            loader.fail(f"nested deeper than {max_depth} levels {over_limit('MAX_NESTING_DEPTH')}")
        if size > max_nodes:
            loader.fail(f"YAML aliases expand to more than {max_nodes} nodes {over_limit('MAX_YAML_NODES')}")
        return size, height

    walk(root, 1)


def load_yaml(text: str, where: str, error: type[UserError] = UserError,
              invalid: type[UserError] | None = None) -> Any:
    """One YAML document (safe tags only; None if empty), or ``error`` ``{where}: ...`` for a document
    beyond the alias, node, depth or number limits, and ``invalid`` (default: ``error``) for one that
    is not YAML."""
    invalid = invalid or error
    loader = None
    try:
        loader = _BoundedLoader(text, where, error)  # the reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_graph(loader, node)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).strip().splitlines()[0]
        raise invalid(f"{where}: invalid YAML{at}: {problem}") from None
    except UserError:  # a limit (AnchorSpecError is also a ValueError)
        raise
    except (ValueError, OverflowError) as e:  # a timestamp or number the constructor refuses
        raise invalid(f"{where}: invalid YAML value: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
            from None
    finally:
        if loader is not None:
            loader.dispose()


# ----------------------------------------------------------------------------------------------- JSON
def _json_depth_ok(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests at most ``max_depth`` lists and dicts (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list):
            continue
        if depth > max_depth:
            return False
        stack.extend((c, depth + 1) for c in v if isinstance(c, (list, dict)))
    return True


def load_json(text: str, where: str, error: type[UserError] = UserError, allow_nan: bool = False) -> Any:
    """A JSON document, or ``error`` ``{where}: ...`` for malformed JSON (line and column), a number
    longer than MAX_NUMBER_CHARS or out of float range, nesting deeper than MAX_NESTING_DEPTH, or NaN
    and Infinity unless ``allow_nan`` (JSON has neither, but Python's ``json.dumps`` writes them, so
    files from Python tools may hold them in fields nobody reads)."""
    max_chars, max_depth = limit("MAX_NUMBER_CHARS"), limit("MAX_NESTING_DEPTH")

    def too_long(s: str) -> None:
        if len(s) > max_chars:
            raise error(f"{where}: number {_short(s)} has more than {max_chars} characters "
                        f"{over_limit('MAX_NUMBER_CHARS')}")

    def parse_int(s: str) -> int:
        too_long(s)
        return int(s)

    def parse_float(s: str) -> float:
        too_long(s)
        value = float(s)
        if value in (float("inf"), float("-inf")):
            raise error(f"{where}: number {s} is out of the range of a float")
        return value

    def parse_constant(s: str) -> float:
        if not allow_nan:
            raise error(f"{where}: {s} is not a JSON number")
        return float(s)

    deep = error(f"{where}: nested deeper than {max_depth} levels {over_limit('MAX_NESTING_DEPTH')}")
    try:
        value = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    except json.JSONDecodeError as e:
        raise error(f"{where}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise deep from None
    if not _json_depth_ok(value, max_depth):
        raise deep
    return value


def read_yaml_file(path: str | Path, where: str, max_bytes: int | str, error: type[UserError] = UserError) -> Any:
    """:func:`load_yaml` of :func:`read_text`."""
    return load_yaml(read_text(path, where, max_bytes, error), where, error)


def read_json_file(path: str | Path, where: str, max_bytes: int | str, error: type[UserError] = UserError) -> Any:
    """:func:`load_json` of :func:`read_text`."""
    return load_json(read_text(path, where, max_bytes, error), where, error)
