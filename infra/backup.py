"""Backup and restore of a whole stack: a JetStream snapshot of every stream plus a PostgreSQL dump.

The streams are saved with the server's own snapshot API (``$JS.API.STREAM.SNAPSHOT.<stream>``) and put back
with its restore API (``$JS.API.STREAM.RESTORE.<stream>``), not by reading and republishing the messages: a
restore keeps every message's stream sequence, its timestamp and its headers (``Nats-Msg-Id``), and the seals
chain over exactly those (``services/sealer/chain.py``: sequence, timestamp, subject, data), the read model's
checkpoint and ``as_of_seq`` are stream sequences, and the gateway's index holds them. A republished copy would
number and stamp every event anew, and no seal would verify any more.

One thing the snapshot does not carry (nats-server 2.15): the stream's creation time, which every seal also
records (a recreated stream is a finding). ``pin_created`` puts it back, offline, in the restored server's
store directory (``meta.inf`` and its HighwayHash checksum ``meta.sum``): ``antq restore --pin-created``. On a
cluster (the time lives in the JetStream meta group) the restore is recorded in the seal chain instead:
``antq seals accept-restore`` (``services/sealer/service.py``, ``Sealer.accept_restore``).

The database is dumped first, the streams after, ANTQ_SEALS before ANTQ_EVENTS: the dump's checkpoint, seals
and index, and the seals snapshot, then never name a sequence the events snapshot lacks (the projection and the
gateway's index catch up from there, a seal the dump lacks is copied over from ANTQ_SEALS by the sealer on
start, and events stored after the seals snapshot are sealed anew after the restore).

A backup is a directory: ``manifest.json``, one ``<stream>.snapshot`` per stream (the server's archive, as
received), ``postgres.dump`` (``pg_dump --format=custom``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from infra.embedded import _pg_bin
from infra.errors import InfraError
from infra.highwayhash import highwayhash64
from infra.streams import EVENTS, REJECTED, SEALS, UPDATES

# ANTQ_SEALS first: a seal appended while the others are snapshotted (a running sealer) is then not in the backup,
# whereas one taken after ANTQ_EVENTS could cover events that snapshot lacks, and the restored chain would seal
# events the restored stream does not hold (a gap: `antq audit seals` and `antq seals accept-restore` refuse it)
STREAMS = (SEALS, EVENTS, REJECTED, UPDATES)
MANIFEST = "manifest.json"
DUMP = "postgres.dump"
FORMAT = 1
CHUNK = 128 * 1024
API = "$JS.API.STREAM"


class BackupError(InfraError):
    """A backup or a restore that could not be done (the root of this module's errors)."""


class SnapshotFailed(BackupError):
    """The server refused or broke off a stream snapshot."""


class RestoreFailed(BackupError):
    """The server refused a stream restore, or a stream to restore is there already with messages."""


class DatabaseDumpFailed(BackupError):
    """pg_dump or pg_restore failed (its own message follows)."""


class BadBackup(BackupError):
    """The backup directory is incomplete, of another format, or a file does not match its checksum."""


class StreamEntry(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    file: str
    size: int
    sha256: str
    messages: int
    first_seq: int
    last_seq: int
    created: str | None
    """The creation time exactly as the server wrote it (RFC 3339, nanoseconds): pinned back verbatim."""
    config: dict[str, Any]
    state: dict[str, Any]


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    format: int
    taken_at: dt.datetime
    streams: tuple[StreamEntry, ...]
    database: str
    database_size: int
    database_sha256: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _api_error(body: dict[str, Any]) -> str | None:
    error = body.get("error")
    if not error:
        return None
    return f"{error.get('description', error)} (err_code {error.get('err_code', '?')})"


NO_RESPONDERS_PATIENCE_S = 10.0
"""How long a request answered 'no responders' is sent again (``request_patiently``)."""


async def request_patiently(
    nc: Client, subject: str, data: bytes, *, timeout: float, patience: float = NO_RESPONDERS_PATIENCE_S
) -> Msg:
    """``nc.request``, sent again (backing off from 50 ms to 1 s) while it is answered 'no responders', for up
    to ``patience`` seconds; then that error.

    A request no one received is safe to send again. On a cluster, a subject a server has just subscribed to
    (the restore's deliver subject, the JetStream API of a node still starting) can be without responders for a
    moment on the node this client is connected to (CI, 2026-12-04, twice: a fresh target cluster answered 'no
    responders' during ``antq restore``). A timeout is not retried: that request may have been received."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = 0.05
    while True:
        try:
            return await nc.request(subject, data, timeout=timeout)
        except nats.errors.NoRespondersError:
            left = deadline - loop.time()
            if left <= 0:
                raise
            await asyncio.sleep(min(delay, left))  # the last try at the deadline
            delay = min(2 * delay, 1.0)


async def _api(
    nc: Client,
    subject: str,
    request: dict[str, Any],
    timeout: float = 10.0,
    patience: float = NO_RESPONDERS_PATIENCE_S,
) -> dict[str, Any]:
    reply = await request_patiently(
        nc, subject, json.dumps(request).encode(), timeout=timeout, patience=patience
    )
    body: dict[str, Any] = json.loads(reply.data or b"{}")
    return body


async def snapshot_stream(nc: Client, stream: str, out: Path, *, timeout: float = 60.0) -> StreamEntry:
    """Save ``stream`` with the server's snapshot API into ``out`` (every chunk acknowledged as it is written)."""
    info = await _api(nc, f"{API}.INFO.{stream}", {})
    if (problem := _api_error(info)) is not None:
        raise SnapshotFailed(f"{stream}: {problem}")
    created = info.get("created")
    inbox = nc.new_inbox()
    done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    size = 0
    with out.open("wb") as file:

        async def chunk(msg: Msg) -> None:
            nonlocal size
            if done.done():
                return
            if not msg.data and not msg.reply:  # the end: a status 204 (or none) is success, else an error
                status = (msg.headers or {}).get("Status")
                described = (msg.headers or {}).get("Description", "")
                done.set_result(None if status in (None, "204") else f"status {status} {described}".strip())
                return
            file.write(msg.data)
            size += len(msg.data)
            if msg.reply:
                await nc.publish(msg.reply, b"")  # flow control: the server sends a window of chunks ahead

        sub = await nc.subscribe(inbox, cb=chunk)
        try:
            body = await _api(
                nc,
                f"{API}.SNAPSHOT.{stream}",
                {"deliver_subject": inbox, "no_consumers": True, "chunk_size": CHUNK},
            )
            if (problem := _api_error(body)) is not None:
                raise SnapshotFailed(f"{stream}: {problem}")
            try:
                failure = await asyncio.wait_for(done, timeout)
            except TimeoutError:
                raise SnapshotFailed(f"{stream}: the snapshot did not end within {timeout:g} s") from None
            if failure is not None:
                raise SnapshotFailed(f"{stream}: the server broke the snapshot off: {failure}")
        finally:
            await sub.unsubscribe()
    state = body.get("state", {})
    return StreamEntry(
        name=stream,
        file=out.name,
        size=size,
        sha256=_sha256(out),
        messages=int(state.get("messages", 0)),
        first_seq=int(state.get("first_seq", 0)),
        last_seq=int(state.get("last_seq", 0)),
        created=str(created) if created else None,
        config=body.get("config", {}),
        state=state,
    )


JETSTREAM_READY_S = 60.0
"""How long a restore waits for the target's JetStream to answer (a cluster just started, electing its leader)."""


async def jetstream_ready(nc: Client, timeout: float = JETSTREAM_READY_S, *, api: str = "$JS.API") -> None:
    """Wait until JetStream answers its account information request, up to ``timeout`` seconds.

    A cluster started moments ago, or loaded enough to lose its meta leader for a while, answers "no responders"
    (or nothing) until a leader is elected; a restore onto it would fail on its first request."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            info = await _api(nc, f"{api}.INFO", {}, timeout=2.0, patience=0)  # this loop waits
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            info = None
        if info is not None and _api_error(info) is None:
            return
        if asyncio.get_running_loop().time() >= deadline:
            problem = "no answer" if info is None else _api_error(info)
            raise RestoreFailed(
                f"JetStream on the target did not answer within {timeout:g} s ({problem}): is every node up, "
                "with a meta leader? (nothing was changed)"
            )
        await asyncio.sleep(0.5)


async def _held(nc: Client, stream: str) -> int | None:
    """None when ``stream`` does not exist on the target, 0 when it is empty; one holding messages is refused."""
    info = await _api(nc, f"{API}.INFO.{stream}", {})
    if _api_error(info) is not None:
        return None
    held = int(info.get("state", {}).get("messages", 0))
    if held:
        raise RestoreFailed(
            f"{stream} exists on the target and holds {held} messages: a backup is restored onto a fresh "
            "stack only (nothing was changed)"
        )
    return 0


async def _database_unused(database_url: str) -> None:
    """Refuse a target database that holds events or figures (an empty or freshly migrated one is fine)."""
    conn = await asyncpg.connect(database_url)
    try:
        for table in ("event_index", "projection_checkpoint", "seals"):
            if await conn.fetchval("SELECT to_regclass($1)", table) is None:
                continue
            where = " WHERE seq > 0" if table == "projection_checkpoint" else ""
            if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table}{where})"):
                raise RestoreFailed(
                    f"the target database has rows in {table}: a backup is restored onto a fresh stack only "
                    "(nothing was changed)"
                )
    finally:
        await conn.close()


async def restore_stream(
    nc: Client, entry: StreamEntry, data: Path, *, replicas: int | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    """Create ``entry.name`` from its snapshot with the server's restore API; the stream info it returns.

    A stream of that name that exists and is empty (made by a service that started first) is deleted before;
    one that holds messages is never touched: ``RestoreFailed``."""
    if await _held(nc, entry.name) is not None:
        deleted = await _api(nc, f"{API}.DELETE.{entry.name}", {})
        if (problem := _api_error(deleted)) is not None:
            raise RestoreFailed(f"{entry.name}: could not delete the empty stream on the target: {problem}")
    config = dict(entry.config)
    if replicas is not None:
        config["num_replicas"] = replicas
    body = await _api(nc, f"{API}.RESTORE.{entry.name}", {"config": config, "state": entry.state})
    if (problem := _api_error(body)) is not None:
        raise RestoreFailed(f"{entry.name}: {problem}")
    deliver = body["deliver_subject"]
    with data.open("rb") as file:
        for block in iter(lambda: file.read(CHUNK), b""):
            ack = await request_patiently(nc, deliver, block, timeout=timeout)
            if ack.data and (problem := _api_error(json.loads(ack.data))) is not None:
                raise RestoreFailed(f"{entry.name}: {problem}")
    final = await request_patiently(nc, deliver, b"", timeout=timeout)
    result: dict[str, Any] = json.loads(final.data or b"{}")
    if (problem := _api_error(result)) is not None:
        raise RestoreFailed(f"{entry.name}: {problem}")
    last = int(result.get("state", {}).get("last_seq", -1))
    if last != entry.last_seq:
        raise RestoreFailed(
            f"{entry.name}: restored up to sequence {last}, the snapshot ends at {entry.last_seq}"
        )
    return result


def _run(args: Sequence[str], what: str) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DatabaseDumpFailed(f"{what} exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")


def dump_database(database_url: str, out: Path) -> None:
    """``pg_dump --format=custom`` (the pg_dump beside the embedded postgres, else the one on PATH)."""
    _run(
        [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(out), "--dbname", database_url],
        "pg_dump",
    )


def restore_database(database_url: str, dump: Path) -> None:
    """``pg_restore`` into ``database_url``: what is there of the same names is dropped first (``--clean``);
    owners and grants are not restored (the target's roles are given by ``antq auth generate``'s SQL)."""
    _run(
        [
            _pg_tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            database_url,
            str(dump),
        ],
        "pg_restore",
    )


def _pg_tool(name: str) -> str:
    try:
        candidate = _pg_bin() / name
    except ImportError:
        return name
    return str(candidate) if candidate.exists() else name


def _new_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise BadBackup(f"{directory} is not empty: a backup goes into a new directory")


async def backup(
    nc: Client, database_url: str, directory: Path, streams: Sequence[str] = STREAMS
) -> Manifest:
    """Dump the database, then snapshot every stream, into a new (or empty) ``directory``."""
    await asyncio.to_thread(_new_directory, directory)
    taken_at = dt.datetime.now(dt.UTC)
    dump = directory / DUMP
    await asyncio.to_thread(dump_database, database_url, dump)
    entries = [await snapshot_stream(nc, name, directory / f"{name}.snapshot") for name in streams]
    manifest = Manifest(
        format=FORMAT,
        taken_at=taken_at,
        streams=tuple(entries),
        database=DUMP,
        database_size=dump.stat().st_size,
        database_sha256=_sha256(dump),
    )
    (directory / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
    return manifest


def read_manifest(directory: Path) -> Manifest:
    """The backup's manifest, every file checked against its size and SHA-256."""
    try:
        manifest = msgspec.json.decode((directory / MANIFEST).read_bytes(), type=Manifest)
    except OSError as exc:
        raise BadBackup(f"{directory / MANIFEST}: {exc.strerror or exc}") from None
    except msgspec.ValidationError as exc:
        raise BadBackup(f"{directory / MANIFEST} is not a backup manifest: {exc}") from None
    if manifest.format != FORMAT:
        raise BadBackup(f"{directory}: backup format {manifest.format}, this version reads {FORMAT}")
    checks = [(s.file, s.size, s.sha256) for s in manifest.streams]
    checks.append((manifest.database, manifest.database_size, manifest.database_sha256))
    for name, size, digest in checks:
        path = directory / name
        if not path.is_file() or path.stat().st_size != size or _sha256(path) != digest:
            raise BadBackup(f"{path} is missing or does not match the manifest (size, SHA-256)")
    return manifest


async def restore(
    nc: Client, database_url: str, directory: Path, *, replicas: int | None = None
) -> tuple[Manifest, list[dict[str, Any]]]:
    """Restore the database, then every stream, from ``directory`` onto a stack whose services are stopped.
    Checked first, before anything changes: the backup's files, no target stream holding messages, no events or
    figures in the target database."""
    manifest = await asyncio.to_thread(read_manifest, directory)
    await jetstream_ready(nc)
    for entry in manifest.streams:
        await _held(nc, entry.name)
    await _database_unused(database_url)
    await asyncio.to_thread(restore_database, database_url, directory / manifest.database)
    infos = [
        await restore_stream(nc, entry, directory / entry.file, replicas=replicas)
        for entry in manifest.streams
    ]
    return manifest, infos


def pin_created(store_dir: Path, stream: str, created: str, *, account: str = "$G") -> bool:
    """Write the original creation time (verbatim, as the source server wrote it) into a restored stream's
    ``meta.inf`` (and its checksum ``meta.sum``) in the store directory of a STOPPED nats-server
    (``jetstream.store_dir``); True when it changed. The server reads it on its next start. Not for an
    encrypted store (its meta.inf is not JSON)."""
    folder = store_dir / "jetstream" / account / "streams" / stream
    if not folder.is_dir():
        folder = store_dir / account / "streams" / stream
    meta = folder / "meta.inf"
    try:
        info = json.loads(meta.read_bytes())
    except (OSError, ValueError) as exc:
        raise RestoreFailed(f"{meta}: cannot read the stream's metadata ({exc})") from None
    field = next((k for k in info if k.lower() == "created"), "Created")  # Go writes "Created"
    if info.get(field) == created:
        return False
    info[field] = created
    body = json.dumps(info, separators=(",", ":")).encode()
    key = hashlib.sha256(stream.encode()).digest()
    tmp = folder / "meta.inf.tmp"
    tmp.write_bytes(body)
    os.replace(tmp, meta)
    (folder / "meta.sum").write_text(highwayhash64(key, body).hex())
    return True
