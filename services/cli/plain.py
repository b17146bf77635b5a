"""Printing text that came from users or from the log without rich interpreting it.

Rich reads ``[bold]``…``[/bold]`` in any string it prints as markup and ``:smiley:`` as an emoji code; a note, a
hamlet, a reason, an office name or an error message quoting an input would be restyled, swallowed or turned into
an emoji. So every console of the CLI is made with ``emoji=False`` and ``highlight=False`` (``console``), table
cells and titles that hold data are ``Text`` (``cell``: never parsed), and a message is printed whole as
``Text`` (``say``) or, inside our own markup, through ``escape``.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape as escape
from rich.text import Text


def console(*, stderr: bool = False) -> Console:
    """A console that prints emoji codes as written and highlights nothing."""
    return Console(stderr=stderr, emoji=False, highlight=False)


def cell(value: object, style: str = "") -> Text:
    """A table cell or title printed exactly as ``value`` reads (``None`` as empty)."""
    return Text("" if value is None else str(value), style=style)


def say(out: Console, message: object, style: str = "") -> None:
    """Print one message literally (no markup, no emoji, no highlighting), wrapped softly."""
    out.print(cell(message, style), soft_wrap=True)
