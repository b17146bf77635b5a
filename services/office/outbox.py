"""The outbox: every event an office publishes, on local disk (SQLite), written before any send.

One file per office. Each entry has a local ``id`` (the enqueue order), the document as it was given, its
``event_id`` and ``type`` when they can be read, and a state:

- ``queued``: not yet answered for good (never sent, no connection, no answer, or ``unavailable``);
- ``done``: the gateway accepted it (``duplicate`` or not), with the stream sequence it answered;
- ``rejected``: the gateway refused it, with the code, message and JSON path it gave;
- ``dropped``: the office discarded it (``antq outbox drop``); kept, never sent again.

Every write is one transaction, committed with ``synchronous=FULL`` in WAL mode: once ``enqueue`` returns, the
entries survive a crash or a power cut. The class is synchronous (stdlib ``sqlite3``); the sender calls it
from a worker thread (``asyncio.to_thread``) under a lock.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import msgspec

from events.intake import IntakeResult
from services.office.errors import NotInOutbox, OutboxError

State = Literal["queued", "done", "rejected", "dropped"]
STATES: tuple[State, ...] = ("queued", "done", "rejected", "dropped")
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT,
    type TEXT,
    body BLOB NOT NULL,
    is_json INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'done', 'rejected', 'dropped')),
    enqueued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    answered_at TEXT,
    seq INTEGER,
    duplicate INTEGER,
    code TEXT,
    message TEXT,
    path TEXT
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, id);
"""


class _Head(msgspec.Struct, kw_only=True):
    event_id: str | None = None
    type: str | None = None


_head = msgspec.json.Decoder(_Head)


def head_of(body: bytes) -> tuple[str | None, str | None, bool]:
    """``(event_id, type, is_json)`` of a document: what can be read of it without judging it."""
    try:
        msgspec.json.decode(body, type=msgspec.Raw)
    except msgspec.DecodeError:
        return None, None, False
    try:
        head = _head.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None, True
    return head.event_id, head.type, True


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One outbox entry, as ``antq outbox list --json`` prints it."""

    id: int
    event_id: str | None
    type: str | None
    state: State
    enqueued_at: str
    attempts: int
    answered_at: str | None
    seq: int | None
    duplicate: bool | None
    code: str | None
    message: str | None
    path: str | None


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """A queued entry as the sender needs it."""

    id: int
    body: bytes
    is_json: bool


_COLUMNS = (
    "id, event_id, type, state, enqueued_at, attempts, answered_at, seq, duplicate, code, message, path"
)


def _entry(row: tuple[Any, ...]) -> Entry:
    (id_, event_id, type_, state, enqueued_at, attempts, answered_at, seq, duplicate, code, message, path) = (
        row
    )
    return Entry(
        id=id_,
        event_id=event_id,
        type=type_,
        state=state,
        enqueued_at=enqueued_at,
        attempts=attempts,
        answered_at=answered_at,
        seq=seq,
        duplicate=None if duplicate is None else bool(duplicate),
        code=code,
        message=message,
        path=path,
    )


def default_path(office: str, data_dir: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``<data dir>/outbox-<office>.sqlite``: the data dir is ``ANTQ_DATA_DIR`` when set, else
    ``$XDG_DATA_HOME/antq`` (``~/.local/share/antq``). Characters of the office id outside ``[A-Za-z0-9._-]``
    become ``_`` (the file remembers its office: another office's is refused)."""
    env = os.environ if env is None else env
    if data_dir is None:
        xdg = env.get("XDG_DATA_HOME")
        data_dir = (Path(xdg) if xdg else Path.home() / ".local" / "share") / "antq"
    return data_dir / f"outbox-{re.sub(r'[^A-Za-z0-9._-]', '_', office)}.sqlite"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class Outbox:
    """One office's outbox file (``":memory:"``: one that lives as long as the object, for tools and tests)."""

    def __init__(self, path: Path | str, office: str) -> None:
        self.path = path
        self.office = office
        self._lock = threading.Lock()
        try:
            if isinstance(path, Path):
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            with self._tx() as db:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('office', ?)", (office,))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                owner = db.execute("SELECT value FROM meta WHERE key = 'office'").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"the outbox {path} cannot be used: {exc}") from None
        if owner != office:
            self._db.close()
            raise OutboxError(
                f"the outbox {path} belongs to office {owner!r}, not {office!r}: give each office its own file"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: committed (and fsync'd) on success, rolled back on error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def enqueue(self, bodies: Iterable[bytes]) -> list[int]:
        """Queue documents (one JSON event each, as bytes) in order; their ids, once durably written."""
        now = _now()
        ids: list[int] = []
        try:
            with self._tx() as db:
                for body in bodies:
                    event_id, type_, is_json = head_of(body)
                    cur = db.execute(
                        "INSERT INTO outbox (event_id, type, body, is_json, state, enqueued_at) "
                        "VALUES (?, ?, ?, ?, 'queued', ?)",
                        (event_id, type_, bytes(body), int(is_json), now),
                    )
                    assert cur.lastrowid is not None
                    ids.append(cur.lastrowid)
        except sqlite3.Error as exc:
            raise OutboxError(f"the outbox {self.path} cannot be written: {exc}") from None
        return ids

    def next_batch(self, max_events: int, max_bytes: int) -> list[Pending]:
        """The first queued entries in enqueue order, as one request may carry them: up to ``max_events`` JSON
        documents whose array stays within ``max_bytes``; a document that is not JSON goes alone."""
        out: list[Pending] = []
        size = 2
        with self._lock:
            cursor = self._db.execute(
                "SELECT id, body, is_json FROM outbox WHERE state = 'queued' ORDER BY id LIMIT ?",
                (max_events,),
            )
            for id_, body, is_json in cursor:
                if not is_json:
                    if not out:
                        out.append(Pending(id=id_, body=body, is_json=False))
                    break
                if out and size + len(body) + 1 > max_bytes:
                    break
                out.append(Pending(id=id_, body=body, is_json=True))
                size += len(body) + 1
            cursor.close()
        return out

    def record(
        self, answers: Sequence[tuple[int, IntakeResult | None]], *, retry_codes: frozenset[str]
    ) -> None:
        """Record the gateway's answers, in one transaction: accepted → ``done``; a code in ``retry_codes`` (or
        no answer, ``None``) → stays ``queued`` with one more attempt; any other code → ``rejected``. Only a
        ``queued`` entry changes (a ``dropped`` one stays dropped)."""
        now = _now()
        with self._tx() as db:
            for id_, res in answers:
                if res is None or (not res.ok and (res.error is None or res.error.code in retry_codes)):
                    db.execute(
                        "UPDATE outbox SET attempts = attempts + 1 WHERE id = ? AND state = 'queued'", (id_,)
                    )
                elif res.ok:
                    db.execute(
                        "UPDATE outbox SET state = 'done', attempts = attempts + 1, answered_at = ?, seq = ?, "
                        "duplicate = ?, code = NULL, message = NULL, path = NULL "
                        "WHERE id = ? AND state = 'queued'",
                        (now, res.seq, int(bool(res.duplicate)), id_),
                    )
                else:
                    assert res.error is not None
                    db.execute(
                        "UPDATE outbox SET state = 'rejected', attempts = attempts + 1, answered_at = ?, "
                        "code = ?, message = ?, path = ? WHERE id = ? AND state = 'queued'",
                        (now, res.error.code, res.error.message, res.error.path, id_),
                    )

    def entries(self, states: Iterable[State] = STATES, ids: Iterable[int] | None = None) -> list[Entry]:
        """Entries in the given states (and, with ``ids``, only those), in enqueue order."""
        wanted = list(states)
        sql = f"SELECT {_COLUMNS} FROM outbox WHERE state IN ({','.join('?' * len(wanted))})"
        params: list[object] = list(wanted)
        if ids is not None:
            chosen = list(ids)
            sql += f" AND id IN ({','.join('?' * len(chosen))})"
            params += chosen
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", params).fetchall()
        return [_entry(row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        return {state: 0 for state in STATES} | {state: int(n) for state, n in rows}

    def body(self, id_: int) -> bytes:
        with self._lock:
            row = self._db.execute("SELECT body FROM outbox WHERE id = ?", (id_,)).fetchone()
        if row is None:
            raise NotInOutbox(f"no entry {id_} in the outbox {self.path}")
        return bytes(row[0])

    def drop(self, id_: int) -> Entry:
        """Discard a ``queued`` or ``rejected`` entry: it is never sent again (kept as ``dropped``)."""
        with self._tx() as db:
            row = db.execute("SELECT state FROM outbox WHERE id = ?", (id_,)).fetchone()
            if row is None:
                raise NotInOutbox(f"no entry {id_} in the outbox {self.path}: see `antq outbox list`")
            if row[0] not in ("queued", "rejected"):
                raise NotInOutbox(f"entry {id_} is {row[0]}: only a queued or rejected entry can be dropped")
            db.execute("UPDATE outbox SET state = 'dropped', answered_at = ? WHERE id = ?", (_now(), id_))
        (entry,) = self.entries(ids=[id_])
        return entry

    def requeue(self, id_: int) -> Entry:
        """Put a ``rejected`` entry back in the queue, unchanged: for a refusal whose cause was outside the
        event and is gone (the office registry or its jurisdiction updated, the tip it refers to now stored).
        Its earlier answer is cleared; the gateway judges it again."""
        with self._tx() as db:
            row = db.execute("SELECT state FROM outbox WHERE id = ?", (id_,)).fetchone()
            if row is None:
                raise NotInOutbox(f"no entry {id_} in the outbox {self.path}: see `antq outbox list`")
            if row[0] != "rejected":
                raise NotInOutbox(f"entry {id_} is {row[0]}: only a rejected entry can be queued again")
            db.execute(
                "UPDATE outbox SET state = 'queued', answered_at = NULL, code = NULL, message = NULL, "
                "path = NULL WHERE id = ?",
                (id_,),
            )
        (entry,) = self.entries(ids=[id_])
        return entry
