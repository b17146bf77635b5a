"""``antq backup PATH`` and ``antq restore PATH``: a stack's streams (the server's snapshot API) and database
(pg_dump) into a directory, and back onto a fresh stack (``infra/backup.py`` says why a snapshot and not a copy
of the messages). Both connect as the identity ``admin`` (stream management) unless ANTQ_IDENTITY names another.

``antq seals accept-restore``: after a restore (whose snapshot cannot carry the stream's creation time, so that
the restored ANTQ_EVENTS is "created" at the restore), record it in the seal chain: the sealer's key signs a
restore seal once every sealed range of the restored stream hashes to what its seal says
(``services/sealer/service.py``). Connects as the identity ``sealer`` unless ANTQ_IDENTITY names another.

Exit status: 0 done, 1 the backup or restore failed, or the restore was refused (stderr says why),
2 a bad option or setting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import nats
import nats.errors
import typer

from infra.auth import AuthError, nats_connect_options
from infra.backup import BackupError, pin_created, read_manifest
from infra.backup import backup as run_backup
from infra.backup import restore as run_restore
from infra.nats_client import server_urls
from infra.settings import Settings, SettingsError
from services.cli.plain import console as plain_console
from services.cli.plain import say
from services.sealer.app import SealerSetupError, resolve_signer
from services.sealer.errors import NothingToAccept, RestoreRefused, SealingHalted
from services.sealer.service import Sealer, SealerConfig

console = plain_console()
err = plain_console(stderr=True)


seals = typer.Typer(no_args_is_help=True, help="The seal chain: record a restore (holds the sealer's key).")


def _settings(identity: str = "admin") -> Settings:
    try:
        return Settings.from_env().as_identity(identity)
    except SettingsError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None


def _urls(settings: Settings) -> tuple[str, str, dict[str, str]]:
    if not settings.nats_url or not settings.database_url:
        say(err, "set ANTQ_NATS_URL and ANTQ_DATABASE_URL (the stack to back up or restore onto)", "red")
        raise typer.Exit(2)
    try:
        options = nats_connect_options(settings)
    except AuthError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None
    return settings.nats_url, settings.database_url, options


@contextlib.contextmanager
def _failing_clearly(what: str) -> Iterator[None]:
    try:
        yield
    except BackupError as exc:
        say(err, f"{what}: {exc}", "red")
        raise typer.Exit(1) from None
    except (OSError, nats.errors.Error) as exc:
        say(err, f"{what}: cannot reach the stack: {str(exc) or type(exc).__name__}", "red")
        raise typer.Exit(1) from None


def backup(
    path: Annotated[Path, typer.Argument(help="a new (or empty) directory for the backup", file_okay=False)],
) -> None:
    """Back up a running stack: the PostgreSQL dump first, then a snapshot of every stream."""
    nats_url, database_url, options = _urls(_settings())

    async def run() -> str:
        nc = await nats.connect(server_urls(nats_url), allow_reconnect=False, connect_timeout=5, **options)
        try:
            manifest = await run_backup(nc, database_url, path)
        finally:
            await nc.drain()
        streams = ", ".join(
            f"{s.name} {s.messages} msgs (seq {s.first_seq}..{s.last_seq})" for s in manifest.streams
        )
        return f"backup in {path}: {streams}; database dump {manifest.database_size:,} bytes"

    with _failing_clearly("backup"):
        say(console, asyncio.run(run()))


def restore(
    path: Annotated[Path, typer.Argument(help="a directory written by `antq backup`", file_okay=False)],
    replicas: Annotated[
        int | None, typer.Option(min=1, max=5, help="stream replicas on the target (default: as backed up)")
    ] = None,
    pin_created_in: Annotated[
        Path | None,
        typer.Option(
            "--pin-created",
            file_okay=False,
            help="offline step: the STOPPED single nats-server's store_dir; puts the streams' creation times back",
        ),
    ] = None,
) -> None:
    """Restore a backup onto a fresh stack (NATS and PostgreSQL up, the services stopped); then, with nats-server
    stopped, `--pin-created STORE_DIR` puts back the streams' creation times the seals recorded."""
    if pin_created_in is not None:
        with _failing_clearly("restore --pin-created"):
            manifest = read_manifest(path)
            for entry in manifest.streams:
                if entry.created is None:
                    continue
                changed = pin_created(pin_created_in, entry.name, entry.created)
                state = "set to" if changed else "already"
                say(console, f"{entry.name}: creation time {state} {entry.created}")
        return
    nats_url, database_url, options = _urls(_settings())

    async def run() -> list[str]:
        nc = await nats.connect(server_urls(nats_url), allow_reconnect=False, connect_timeout=5, **options)
        try:
            manifest, infos = await run_restore(nc, database_url, path, replicas=replicas)
        finally:
            await nc.drain()
        lines = [f"database restored from {manifest.database}"]
        for entry, info in zip(manifest.streams, infos, strict=True):
            moved = entry.created is not None and info.get("created") != entry.created
            lines.append(
                f"{entry.name}: {entry.messages} msgs, seq {entry.first_seq}..{entry.last_seq}"
                + (
                    " (creation time differs: on one server, stop it and run --pin-created; on a cluster, "
                    "`antq seals accept-restore` records the restore in the seal chain)"
                    if moved
                    else ""
                )
            )
        return lines

    with _failing_clearly("restore"):
        for line in asyncio.run(run()):
            say(console, line)


@seals.command("accept-restore")
def accept_restore(
    seed_file: Annotated[
        Path | None,
        typer.Option(help="the sealer's nkey seed (default: ANTQ_SEAL_SEED_FILE, else DATA_DIR/sealer.nk)"),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="the sealer's data directory (default: ANTQ_DATA_DIR)"),
    ] = None,
) -> None:
    """After `antq restore` (the stream is then created anew): check that the restored ANTQ_EVENTS holds, up to
    the last sealed sequence, exactly what the seals sealed, and if so append a restore seal signed by the
    sealer's key; a running sealer then seals on. Refused (exit 1, nothing appended) when anything differs."""
    settings = _settings("sealer")
    nats_url, database_url, options = _urls(settings)
    try:
        signer = resolve_signer(seed_file, data_dir or settings.data_dir)
    except SealerSetupError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None
    config = SealerConfig(
        nats_url=nats_url,
        database_url=database_url,
        signer=signer,
        nats_options=options,
    )

    async def run() -> str:
        async with Sealer(config) as sealer:
            seal = await sealer.accept_restore()
        assert seal.restored_from is not None
        return (
            f"restore recorded: seal #{seal.number} of {seal.stream}: created {seal.stream_created.isoformat()} "
            f"(was {seal.restored_from.isoformat()}); events 1..{seal.last_seq} ({seal.count}) match the seals; "
            f"digest {seal.digest}, signed by {seal.signer}"
        )

    with _failing_clearly("accept-restore"):
        try:
            say(console, asyncio.run(run()))
        except NothingToAccept as exc:
            say(console, f"nothing to accept: {exc}")
        except RestoreRefused as exc:
            say(err, f"restore refused: {exc}", "red")
            raise typer.Exit(1) from None
        except SealingHalted as exc:
            say(err, f"restore not recorded: {exc}", "red")
            raise typer.Exit(1) from None
