"""``antq contract …``: the published contract (JSON Schemas and an AsyncAPI document), generated from the code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli.plain import console as plain_console

contract = typer.Typer(
    no_args_is_help=True, help="The contract other teams code against, built from the code."
)
console = plain_console()

DEFAULT_OUT = Path("docs/contract")


@contract.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="directory to write into")] = DEFAULT_OUT,
) -> None:
    """Write schemas/*.json (one JSON Schema per event type, the replies, the query, the update feed, the
    stored records) and asyncapi.yaml under OUT (default docs/contract/). Regenerating changes nothing unless
    the code changed."""
    from services.contract.build import build, write

    files = build()
    changed = [rel for rel, text in files.items() if _current(out / rel) != text]
    write(out, files)
    console.print(f"{len(files)} files in {out}; {len(changed)} changed", highlight=False, markup=False)
    for rel in changed:
        console.print(f"  {rel}", highlight=False, markup=False)


@contract.command("enums")
def enums() -> None:
    """Print the Markdown table of every enum value beside its field, for the README."""
    from services.contract.build import enum_table

    print(enum_table(), end="")


def _current(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
