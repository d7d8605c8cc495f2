"""Declaring config options once, beside the field they configure.

A config section is a dataclass whose fields are made with :func:`option`: the default,
the accepted type, and the allowed choices or range live on the field, and :func:`check`
validates any value against them with an error naming the key::

    @dataclass
    class SolverConfig:
        lr: float = option(0.01, low=0, low_open=True)
        schedule: str = option("cosine", choices=("cosine", "step"))

    defaults(SolverConfig)                      # {"lr": 0.01, "schedule": "cosine"}
    check(SolverConfig, "solver.lr", -1)        # ConfigError: config key solver.lr: -1 is out of range; ...
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from metaanchor.errors import ConfigError


def option(default: Any, *, kind: type | None = None, nullable: bool | None = None,
           choices: Iterable | Callable[[], Iterable] | None = None, low: float | None = None,
           high: float | None = None, low_open: bool = False, high_open: bool = False,
           items: type | None = None) -> Any:
    """A dataclass field with its validation rules.

    kind: the value's type (default: the default's type; ``float`` also takes ints). nullable: None is
    allowed (default: when the default is None). choices: the allowed values, or a function returning
    them (for registries that grow). low/high: numeric range, open at an end with ``low_open``/``high_open``.
    items: for a list option, the type of each item (a single scalar is taken as a one-item list).
    """
    kind = kind or (type(default) if default is not None else str)
    rules = dict(kind=kind, nullable=default is None if nullable is None else nullable, choices=choices,
                 low=low, high=high, low_open=low_open, high_open=high_open, items=items)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=rules)
    return dataclasses.field(default=default, metadata=rules)


def defaults(section: type) -> dict:
    """The section's fields and their default values, in declaration order."""
    return {f.name: (f.default_factory() if f.default is dataclasses.MISSING else f.default)
            for f in dataclasses.fields(section)}


def fields(section: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(section)}


def check(section: type, key: str, value: Any) -> Any:
    """``value`` validated (and coerced: int -> float, scalar -> list) for the field ``key``'s last part.

    ``key`` is the dotted name used in messages (``solver.lr``); a ConfigError names it and what is allowed."""
    name = key.rsplit(".", 1)[-1]
    rules = fields(section)[name].metadata
    if value is None:
        if rules["nullable"]:
            return None
        raise ConfigError(f"config key {key}: expected {rules['kind'].__name__}, got no value")
    value = _coerce(key, value, rules["kind"], rules["nullable"])
    if rules["items"] is not None:
        for item in value:
            _check_item(key, item, rules["items"])
    _check_number(key, value, rules)
    choices = rules["choices"]
    if choices is not None:
        allowed = tuple(choices() if callable(choices) else choices)
        if value not in allowed:
            raise ConfigError(f"config key {key}: {value!r} is not one of {', '.join(map(str, allowed))}")
    return value


_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(key: str, value: Any, kind: type, nullable: bool = False) -> Any:
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        list: lambda v: isinstance(v, list),
    }[kind]
    if ok(value):
        return float(value) if kind is float else value
    if kind is float and isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-5 (no dot) as text
    if kind is list and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [value]
    raise ConfigError(f"config key {key}: expected {kind.__name__}{' or null' if nullable else ''}, got {value!r}")


def _check_item(key: str, item: Any, kind: type) -> None:
    ok = isinstance(item, str) if kind is str else (
        isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item))
    if not ok:
        raise ConfigError(f"config key {key}: item {item!r} is not a {kind.__name__}")


def _check_number(key: str, value: Any, rules: dict) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key}: {value!r} is not a finite number")
    low, high = rules["low"], rules["high"]
    if low is None and high is None or isinstance(value, (str, list, bool)):
        return
    below = low is not None and (value < low or (rules["low_open"] and value == low))
    above = high is not None and (value > high or (rules["high_open"] and value == high))
    if below or above:
        raise ConfigError(f"config key {key}: {value!r} is out of range; allowed: {_allowed(rules)}")


def _allowed(rules: dict) -> str:
    low, high = rules["low"], rules["high"]
    if high is None:
        return f"{'>' if rules['low_open'] else '>='} {low}"
    if low is None:
        return f"{'<' if rules['high_open'] else '<='} {high}"
    if not rules["low_open"] and not rules["high_open"]:
        return f"in {low}..{high}"
    return f"{'>' if rules['low_open'] else '>='} {low} and {'<' if rules['high_open'] else '<='} {high}"
