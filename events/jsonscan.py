"""Cheap structural checks of a JSON body made before (depth) and after (duplicate keys) msgspec decodes it.

msgspec recurses once per nesting level (a body ~1,000 deep raises ``RecursionError``, not a decode error) and
keeps the last of two equal keys without a word. Both services refuse these bodies themselves:

- ``nesting_depth``: the deepest ``[``/``{`` nesting of a body, brackets inside strings ignored. A body with at
  most ``MAX_DEPTH`` brackets in all is answered at once (a single event has about three).
- ``duplicate_key``: the JSON path of the first key given twice in one object, at any level. The common case
  (no duplicate) costs a generic msgspec decode and a count of quotes; only a document with a duplicate is
  walked object by object to name it.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

import msgspec

MAX_DEPTH = 64

# A string of the skeleton (quotes and brackets only, no escapes left): the brackets in it are text.
_IN_STRING = re.compile(rb'"[^"]*"')
_NOT_SKELETON = bytes(b for b in range(256) if b not in b'[{]}"')
# Brackets to +1 (opening) and -1 (closing, 0xff as a signed byte); everything else is deleted.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_generic = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def nesting_depth(body: bytes) -> int:
    """How deep ``[``/``{`` nest in ``body``, ignoring those inside strings (an unterminated string runs to the
    end). Linear in the body, at C speed: escaped backslashes and quotes are removed (so that every quote left
    opens or closes a string), then everything but quotes and brackets; the strings left (quotes around
    brackets) are cut out, and the brackets summed as signed bytes."""
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    # two quotes side by side are an empty string, or two strings with nothing between them: both can go
    skeleton = unescaped.translate(None, _NOT_SKELETON).replace(b'""', b"")
    skeleton = _IN_STRING.sub(b"", skeleton)
    open_quote = skeleton.find(b'"')  # a string that never ends: the rest of the body is inside it
    if open_quote >= 0:
        skeleton = skeleton[:open_quote]
    return _depth_of_brackets(skeleton)


def _depth_of_brackets(data: bytes) -> int:
    steps = array("b", data.translate(_BRACKETS, _NOT_BRACKETS))
    return max(accumulate(steps), default=0)


def too_deep(body: bytes) -> int | None:
    """The nesting depth of ``body`` when it is above ``MAX_DEPTH``, else None."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return None  # too few brackets to nest deeper: the common case, two counts
    depth = nesting_depth(body)
    return depth if depth > MAX_DEPTH else None


def key_path(parent: str, key: str) -> str:
    """``$.name`` for a plain name, ``$["odd key"]`` for any other (as JSON, so quotes and backticks survive)."""
    return f"{parent}.{key}" if _NAME.fullmatch(key) else f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


def duplicate_key(document: bytes, encoded: bytes | None = None) -> str | None:
    """The path of the first key that appears twice in one object of ``document`` (valid JSON no deeper than
    ``MAX_DEPTH``, already decoded once), e.g. ``$.items[1].kind``; None when there is none.

    Cheap when there is none: every string of valid JSON (key or value) is delimited by two quotes that are
    not escaped, and a decoder keeps one key of each duplicate pair, so the document has more such quotes than
    its decoded form encoded again exactly when a key (and its value) was dropped. Only then (or when the document
    holds an escaped backslash, which makes a backslash before a quote ambiguous) is it walked object by
    object.

    ``encoded``, the document decoded into its Struct and encoded again, makes the common case cheaper still: a
    Struct that leaves its defaults out (``omit_defaults``, or no defaults at all) encodes exactly the strings
    of the document but those of a dropped duplicate or of a field given with its default value, so equal
    counts mean no duplicate, and any other count is decided as without it."""
    if encoded is not None:
        if document.find(92) < 0 and encoded.find(92) < 0:  # no backslash, no escape: every quote delimits
            if document.count(b'"') == encoded.count(b'"'):
                return None
        elif b"\\\\" not in document and b"\\\\" not in encoded and _quotes(document) == _quotes(encoded):
            return None
    if b"\\\\" not in document:
        try:
            tree = _generic.decode(document)
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
            pass  # a number too large for msgspec, say: the walk below decides
        else:
            # the decoded form encoded again: its strings are the same, quoted the same way
            again = _encoder.encode(tree)
            if _quotes(document) == _quotes(again):
                return None
    try:
        pairs = json.loads(document, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):  # not JSON: not ours to judge, the caller's decoder has its answer
        return None
    return _find_duplicate(pairs, "$")


def _quotes(document: bytes) -> int:
    """The quotes that open or close a string, in JSON without an escaped backslash."""
    return document.count(b'"') - document.count(b'\\"')


class _Pairs(list[tuple[str, Any]]):
    """An object as its key-value pairs, in order, duplicates kept."""


def _find_duplicate(node: Any, path: str) -> str | None:
    if isinstance(node, _Pairs):
        seen: set[str] = set()
        for key, _ in node:
            if key in seen:
                return key_path(path, key)
            seen.add(key)
        for key, value in node:
            found = _find_duplicate(value, key_path(path, key))
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found = _find_duplicate(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None
