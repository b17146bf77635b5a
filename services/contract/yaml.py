"""A tiny YAML emitter for JSON-like data (no PyYAML): block mappings and sequences, plain scalars where they
are unambiguous, JSON double-quoted strings otherwise (every JSON string is a valid YAML one), literal blocks
for text of several lines. Deterministic: the output depends only on the value (mapping order is kept)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

Json = None | bool | int | float | str | Sequence["Json"] | Mapping[str, "Json"]

_PLAIN = re.compile(r"[A-Za-z_$/][A-Za-z0-9_$./{}()' ,`-]*[A-Za-z0-9_$./{}()`]|[A-Za-z_$]")
_RESERVED = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"})


def _string(text: str) -> str:
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED and "{" not in text[:1]:
        return text
    return json.dumps(text, ensure_ascii=False)


def _scalar(value: Json) -> str | None:
    """The one-line form of ``value``, or None for a container that needs a block or a multi-line text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return None if _literal_block(value) else _string(value)
    if isinstance(value, Mapping):
        return "{}" if not value else None
    return "[]" if not value else None


def _literal_block(text: str) -> bool:
    """Text of several lines that a ``|-`` block keeps byte for byte."""
    lines = text.split("\n")
    return (
        len(lines) > 1
        and not text.endswith("\n")
        and not lines[0].startswith(" ")
        and all(line == line.rstrip() and line.isprintable() for line in lines)
    )


def _emit(value: Json, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, Mapping):
        for key, item in value.items():
            head = f"{pad}{_string(key)}:"
            one_line = _scalar(item)
            if one_line is not None:
                out.append(f"{head} {one_line}")
            elif isinstance(item, str):
                out.append(f"{head} |-")
                out.extend(f"{pad}  {line}" if line else "" for line in item.split("\n"))
            else:
                out.append(head)
                _emit(item, indent + 2, out)
        return
    assert isinstance(value, Sequence) and not isinstance(value, str)
    for item in value:
        one_line = _scalar(item)
        if one_line is not None:
            out.append(f"{pad}- {one_line}")
            continue
        if isinstance(item, str):
            out.append(f"{pad}- |-")
            out.extend(f"{pad}  {line}" if line else "" for line in item.split("\n"))
            continue
        start = len(out)
        _emit(item, indent + 2, out)
        out[start] = f"{pad}- {out[start][indent + 2 :]}"


def dump(value: Mapping[str, Json]) -> str:
    """``value`` as a YAML document, ending with a newline."""
    out: list[str] = []
    _emit(value, 0, out)
    return "\n".join(out) + "\n"
