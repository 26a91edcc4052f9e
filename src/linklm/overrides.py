"""Typed updates of the config dataclasses: `key=value` overrides and YAML mappings, checked against
each field's type hint before they are set (`config.load_config` is the entry)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import yaml

from linklm.errors import UserError

# Keys that were renamed: a config that still uses one is told the new name.
RENAMED = {"llm.epochs": "llm.max_epochs (the most epochs; llm.patience stops earlier when val stops improving)"}


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type hint of `key`; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        for arg in options:
            try:
                return coerce(value, arg, key)
            except UserError:
                if len(options) == 1:  # (str | None): say what is wrong with the str
                    raise
        raise UserError(f"config key {key} has the wrong type: {value!r}")
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise UserError(f"config key {key} must be a mapping, got {value!r}")
        return {str(k): coerce(v, item, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise UserError(f"config key {key} must be a list, got {value!r}")
        return [coerce(v, item, key) for v in value]
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads 1e-3 (no dot) as a string; a float written that way is still a float.
        try:
            value = float(value)
        except ValueError:
            raise UserError(f"config key {key} must be a float, got {value!r}") from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config key {key} must be a finite number, got {value!r}")
    if hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if hint is str and isinstance(value, str) and "\x00" in value:
        raise UserError(f"config key {key} contains a NUL byte: {value!r}")  # no path or name may hold one
    if hint in (int, float) and isinstance(value, bool):
        raise UserError(f"config key {key} must be a {hint.__name__}, got {value!r}")
    if not isinstance(value, hint):
        raise UserError(f"config key {key} must be a {hint.__name__}, got {value!r}")
    return value


def apply(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in names and full in RENAMED:
            raise UserError(f"config key {full} is now {RENAMED[full]}")
        if key not in names:
            raise UserError(f"unknown config key {full!r} (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"config key {full} must be a mapping, got {value!r}")
            apply(current, value, prefix=f"{full}.")
        elif isinstance(current, dict):  # a mapping merges (llm.lr_by_model.vanilla=3e-4 changes one
            value = coerce(value, hints[key], full)  # entry); an empty one ({}) clears it
            setattr(obj, key, {**current, **value} if value else {})
        else:
            setattr(obj, key, coerce(value, hints[key], full))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn `["data.seed=7"]` into `{"data": {"seed": 7}}`; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "" in key.split("."):
            raise UserError(f"override {item!r} must look like key=value (key: name or section.name)")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r} conflicts with another override")
        node[leaf] = value
    return nested
