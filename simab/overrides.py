"""``key=value`` overrides from the command line (``--set``, ``--grid``, ``train --set``).

A key is a dotted path into the spec (``arms.treatment.params.blend``); a value is read
as a TOML value (numbers, booleans, arrays, quoted strings) and kept as the raw string
when it is not one.  A leaf module: it imports only :mod:`simab.errors`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from simab.errors import SimabError

#: The deepest dotted key a spec has is 4 parts (``world.scenarios.home.n_candidates``);
#: a longer one names nothing, and a value nested deeper than this is no spec value.
MAX_KEY_PARTS = 8
MAX_KEY_CHARS = 200
MAX_VALUE_CHARS = 10_000


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"[1, 2]"`` -> [1, 2], ``"true"`` -> True, ``"relu"`` -> "relu"."""
    try:
        return tomllib.loads(f"x = {text}")["x"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


#: An unquoted word (a policy name, ``pathways+prompt``, a path) kept as a string.
PLAIN_WORD = re.compile(r"[A-Za-z_/][A-Za-z0-9_+\-./]*")


def parse_strict_value(text: str, *, source: str, key: str, name: str) -> Any:
    """:func:`parse_value` for values that must be meant: a TOML value, or a plain word kept as
    a string; anything else (``0.5x``, ``[1, 2``) is a ``SimabError`` naming ``name`` rather
    than a string that fails later."""
    try:
        return tomllib.loads(f"x = {text}")["x"]
    except (tomllib.TOMLDecodeError, RecursionError):
        if PLAIN_WORD.fullmatch(text):
            return text
        raise SimabError(f"value {text!r} of {name!r} is neither a TOML value (number, boolean, array, quoted "
                         "string) nor a plain word", source=source, key=key) from None


def split_assignment(item: str, *, source: str, key: str | None = None,
                     shape: str = "key=value") -> tuple[str, str]:
    """``"a.b=text"`` -> ``("a.b", "text")`` (both stripped); a ``SimabError`` naming
    ``source``/``key`` when there is no ``=`` or the dotted key has an empty part."""
    if "=" not in item:
        raise SimabError(f"expected {shape}, got {item[:60]!r}", source=source, key=key)
    name, value = (s.strip() for s in item.split("=", 1))
    if not name or not all(name.split(".")):
        raise SimabError(f"empty key in {item[:60]!r}", source=source, key=key)
    if len(name) > MAX_KEY_CHARS or name.count(".") >= MAX_KEY_PARTS:
        raise SimabError(f"key {name[:40]!r}... has {name.count('.') + 1} parts and {len(name)} characters; a spec "
                         f"key has at most {MAX_KEY_PARTS} parts and {MAX_KEY_CHARS} characters", source=source, key=key)
    if len(value) > MAX_VALUE_CHARS:
        raise SimabError(f"the value of {name!r} is {len(value):,} characters long; at most {MAX_VALUE_CHARS:,}",
                         source=source, key=key)
    return name, value


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"world.n_users": 200}`` -> ``{"world": {"n_users": 200}}``."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = out
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def parse_overrides(items: Iterable[str], *, source: str = "--set") -> dict[str, Any]:
    """``["world.n_users=200", "seed=3"]`` -> ``{"world": {"n_users": 200}, "seed": 3}``."""
    flat: dict[str, Any] = {}
    for item in items:
        name, value = split_assignment(item, source=source)
        flat[name] = parse_value(value)
    return nest(flat)
