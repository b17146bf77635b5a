"""What free text an event may carry (``hamlet``, ``note``, ``reason``).

Refused, because they hide or reorder what a person reads, or break a terminal or a CSV export: control
characters other than newline and tab (C0, DEL, C1), bidirectional controls (U+061C, U+200E, U+200F,
U+202A-U+202E, U+2066-U+2069), zero-width characters (U+200B-U+200D, U+2060, U+FEFF) and every other invisible
format character (Unicode category Cf: the soft hyphen, invisible operators, the tag characters U+E0000-U+E007F
that can smuggle hidden text, ...), and text that is blank once trimmed (give some text, or leave the optional
field out).
"""

from __future__ import annotations

import re
import unicodedata

FORBIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"  # control characters, newline (\x0a) and tab (\x09) allowed
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional marks, embeddings, overrides, isolates
    "\u200b-\u200d\u2060\ufeff"  # zero-width space, non-joiner, joiner, word joiner, BOM
    # the rest of category Cf (Unicode 14): invisible format characters
    "\u00ad\u0600-\u0605\u06dd\u070f\u0890\u0891\u08e2\u180e\u2061-\u2064\u206a-\u206f\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}".rstrip() if name else f"U+{ord(char):04X} (a control character)"


def text_problem(value: str) -> str | None:
    """Why ``value`` is refused as free text (a sentence to follow the field's name), or None."""
    found = FORBIDDEN.search(value)
    if found is not None:
        return (
            f"contains {_describe(found.group())} at character {found.start()}: control characters other than"
            " newline and tab, bidirectional controls and zero-width characters are refused"
        )
    if not value.strip():
        return "is blank: give some text, or leave the field out"
    return None
