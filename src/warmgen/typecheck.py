"""Checking a value against a dataclass field's type annotation, converting where YAML is loose."""

from __future__ import annotations

import dataclasses
import functools
import math
import reprlib
import types
import typing
from typing import Any, Literal

from .errors import ConfigError

YAML_TRUE, YAML_FALSE = ("yes", "on", "true"), ("no", "off", "false")


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 3, 4, 4, 80, 80


def shown(value: Any) -> str:
    """`repr(value)`, shortened: a value may be huge (a long list, or YAML aliases standing for millions)."""
    return _SHORT.repr(value)


@functools.cache
def field_types(cls: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_type(value: Any, expected: Any, key: str) -> Any:
    """Return `value` converted to `expected`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return check_type(value, inner[0], key)
    if isinstance(expected, type) and dataclasses.is_dataclass(expected):  # a section, as its dataclass or a dict of its fields
        if isinstance(value, expected):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {key} fields, got {shown(value)}")
        section = expected()
        for name, field_value in value.items():
            setattr(section, name, field_value)
        return section
    if origin is Literal:
        if isinstance(value, bool) and value not in args:  # YAML 1.1 reads an unquoted no/off (yes/on) as false (true)
            spelled = [a for a in args if isinstance(a, str) and a.lower() in (YAML_TRUE if value else YAML_FALSE)]
            value = spelled[0] if len(spelled) == 1 else value
        if not any(value == a and type(value) is type(a) for a in args):  # 1 is not True
            options = ", ".join(str(a).lower() if isinstance(a, bool) else repr(a) for a in args)
            read_as = " (YAML reads an unquoted yes, no, on, off, true or false as a boolean)" if isinstance(value, bool) else ""
            raise ConfigError(f"{key}: {shown(value)} is not one of {options}{read_as}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {shown(value)}")
        return [check_type(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if expected is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)  # YAML 1.1 reads 2e-3 (no dot) as a string
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {shown(value)}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {shown(value)}")
        return number
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {shown(value)}")
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {shown(value)}")
    if not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {expected.__name__}, got {shown(value)}")
    return value
