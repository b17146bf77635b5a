"""TLS on every NATS connection: the files ``antq auth generate`` writes, a real nats-server (and a three-node
cluster whose routes verify each other) started with them, a service and an office over TLS, plain and
untrusted connections refused."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import stat
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from cryptography import x509
from nats.aio.client import Client
from nats.js.api import StreamConfig
from nats.js.errors import APIError
from typer.testing import CliRunner

from events.localities import Localities
from infra.auth import AuthError, nats_connect_options
from infra.auth.credentials import Generated, generate
from infra.embedded import EmbeddedNats, free_port
from infra.settings import Settings, SettingsError
from infra.streams import StreamLimits, ensure_streams
from infra.tls import (
    SERVER_NAMES,
    TlsError,
    TlsFiles,
    cert_names,
    client_context,
    generate_tls,
    server_tls_block,
)
from services.cli.main import app
from services.client import OfficeClient
from services.gateway.app import Gateway, GatewayConfig
from services.nats_broker import nats_broker
from tests import factories as f
from tests.conftest import wait_until_answering
from tests.servers import Servers, fresh_database, wait_for

pytestmark = pytest.mark.servers

OFFICE = "ca-cao-bang"


def _over_tls(nc: Client) -> bool:
    """Whether the client's socket speaks TLS (nats-py's TCP transport keeps its stream writer)."""
    writer = getattr(nc._transport, "_io_writer", None)
    return writer is not None and writer.get_extra_info("ssl_object") is not None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the files -------------------------------------------------------------------------------------------


def test_generate_writes_a_ca_and_a_server_certificate_for_every_node_keys_0600(tmp_path: Path) -> None:
    files = generate_tls(tmp_path, ["nats.example.org", "10.0.0.7"], ["ops"])
    assert set(SERVER_NAMES) | {"nats.example.org", "10.0.0.7"} <= cert_names(files.server_cert)
    for key in (files.ca_key, files.server_key, files.clients["ops"][1]):
        assert _mode(key) == 0o600, key
    assert _mode(files.directory) == 0o700
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u.dotted_string for u in usages} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}  # server + client


def test_a_second_run_keeps_the_ca_and_reissues_the_server_certificate_only_for_a_new_name(
    tmp_path: Path,
) -> None:
    first = generate_tls(tmp_path)
    ca, server = first.ca_cert.read_bytes(), first.server_cert.read_bytes()
    again = generate_tls(tmp_path)
    assert again.created == ()
    assert (again.ca_cert.read_bytes(), again.server_cert.read_bytes()) == (ca, server)
    wider = generate_tls(tmp_path, ["nats-4"])
    assert wider.created == ("server.pem", "server-key.pem")
    assert wider.ca_cert.read_bytes() == ca
    assert "nats-4" in cert_names(wider.server_cert)


def test_bad_names_and_files_are_refused_with_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="neither a host name nor an IP"):
        generate_tls(tmp_path, ["nats 1"])
    with pytest.raises(TlsError, match="letters, digits"):
        generate_tls(tmp_path, clients=["a/b"])
    assert not (tmp_path / "tls").exists()  # refused before anything was written
    with pytest.raises(TlsError, match="not found"):
        client_context(tmp_path / "missing.pem")
    settings = Settings(nats_tls_ca=tmp_path / "missing.pem")
    with pytest.raises(AuthError, match="not found"):  # what every entry point reports and exits 2 on
        nats_connect_options(settings)
    with pytest.raises(SettingsError, match="both or neither"):
        Settings.from_env({"ANTQ_NATS_TLS_CERT": "/x.pem"})


def test_antq_auth_generate_writes_tls_and_signing_keys(tmp_path: Path) -> None:
    out = tmp_path / "credentials"
    result = CliRunner().invoke(app, ["auth", "generate", "--out", str(out), "--host", "nats.example.org"])
    assert result.exit_code == 0, result.output
    for name in (
        "tls/ca.pem",
        "tls/ca-key.pem",
        "tls/server.pem",
        "tls/server-key.pem",
        "updates.nk",
        "seal.nk",
    ):
        assert (out / name).exists(), name
    assert "nats.example.org" in cert_names(out / "tls/server.pem")
    assert "ANTQ_NATS_TLS_CA" in result.output
    bad = CliRunner().invoke(app, ["auth", "generate", "--out", str(out), "--host", "a b"])
    assert bad.exit_code == 2


# --- a real nats-server with them --------------------------------------------------------------------------


@dataclass
class TlsServer:
    generated: Generated
    tls: TlsFiles
    server: EmbeddedNats

    def settings(self, identity: str) -> Settings:
        return Settings(
            credentials_dir=self.generated.directory, identity=identity, nats_tls_ca=self.tls.ca_cert
        )

    def options(self, identity: str) -> dict[str, Any]:
        return nats_connect_options(self.settings(identity))


def _server_conf(node_dir: Path, tls: TlsFiles, auth_conf: Path, extra: str = "") -> Path:
    """An include for ``EmbeddedNats``: the client ``tls {}`` block, the identities, and ``extra``."""
    node_dir.mkdir(parents=True, exist_ok=True)
    conf = node_dir / "tls-server.conf"
    conf.write_text(
        server_tls_block(tls) + extra + f'include "{os.path.relpath(auth_conf, node_dir)}"\n',
        encoding="utf-8",
    )
    return conf


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    base = tmp_path_factory.mktemp("tls")
    generated = generate(base / "credentials", [OFFICE])
    tls = generate_tls(generated.directory)
    conf = _server_conf(base / "nats", tls, generated.server_conf)
    server = EmbeddedNats(base / "nats", sync_always=False, auth_conf=conf)
    server.start()
    try:
        yield TlsServer(generated, tls, server)
    finally:
        server.stop()


@pytest.mark.timeout(60)
async def test_a_plain_connection_is_refused(tls_server: TlsServer) -> None:
    # nats-py without a TLS context: it must upgrade (the server requires TLS) and cannot verify our CA
    with pytest.raises((ssl.SSLError, nats.errors.NoServersError, OSError)):
        await nats.connect(
            tls_server.server.url,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=5,
            **{k: v for k, v in tls_server.options(f"office-{OFFICE}").items() if k != "tls"},
        )
    # a client that never starts TLS and writes the protocol in clear: the server answers with an error, never
    # a PONG, and closes the connection
    reply = await asyncio.to_thread(_plain_protocol, tls_server.server.port)
    print(f"plain CONNECT/PING answered: {reply!r}")
    assert b"PONG" not in reply
    assert b"tls_required" in reply.lower()  # its INFO said so before anything else


def _plain_protocol(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        data = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.timeout(60)
async def test_tls_with_the_ca_but_without_an_identity_is_still_refused(tls_server: TlsServer) -> None:
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(
            tls_server.server.url,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=5,
            tls=client_context(tls_server.tls.ca_cert),
        )


@pytest.mark.timeout(90)
async def test_the_gateway_and_an_office_work_over_tls(
    tls_server: TlsServer, template: Servers, offices_file: Path, localities: Localities
) -> None:
    """The gateway (FastStream's broker and its own nats-py connection) connects with ANTQ_NATS_TLS_CA and its
    identity; an office submits over TLS and its events are accepted and stored."""
    url = tls_server.server.url
    env = {
        "ANTQ_CREDENTIALS_DIR": str(tls_server.generated.directory),
        "ANTQ_IDENTITY": "admin",
        "ANTQ_NATS_TLS_CA": str(tls_server.tls.ca_cert),
    }
    admin = await nats.connect(url, allow_reconnect=False, **nats_connect_options(Settings.from_env(env)))
    office = await nats.connect(url, allow_reconnect=False, **tls_server.options(f"office-{OFFICE}"))
    try:
        assert _over_tls(admin)
        await ensure_streams(admin.jetstream(), StreamLimits(dedup_window_s=3600.0))
        gateway = Gateway(
            GatewayConfig(
                nats_url=url,
                database_url=await fresh_database(template),
                offices_path=offices_file,
                localities=localities,
                nats_options=tls_server.options("gateway"),
            )
        )
        async with gateway.app:
            await wait_until_answering(office, f"antq.intake.{OFFICE}")
            results = await OfficeClient(office, OFFICE, timeout=30).submit(
                [f.session(attendance=5) for _ in range(3)]
            )
            assert all(r.ok for r in results), [r.error for r in results]
            info = await admin.jetstream().stream_info("ANTQ_EVENTS")
            print(f"3 events accepted over TLS; ANTQ_EVENTS holds {info.state.messages}")
            assert info.state.messages == 3
    finally:
        await office.drain()
        await admin.drain()


@pytest.mark.timeout(60)
async def test_the_faststream_broker_takes_the_tls_context(tls_server: TlsServer) -> None:
    broker = nats_broker(tls_server.server.url, tls_server.options("query"))
    await broker.connect()
    try:
        assert _over_tls(broker.connection)
    finally:
        await broker.stop()


@pytest.mark.timeout(60)
async def test_a_server_that_verifies_clients_takes_the_generated_client_certificate(tmp_path: Path) -> None:
    """``verify: true`` on the client port: ANTQ_NATS_TLS_CERT/KEY (a ``--tls-client`` certificate) get in,
    the CA alone does not."""
    generated = generate(tmp_path / "credentials")
    tls = generate_tls(generated.directory, clients=["gateway"])
    conf = tmp_path / "nats" / "tls-server.conf"
    conf.parent.mkdir(parents=True)
    auth = f"../credentials/{generated.server_conf.name}"  # relative to the including file
    conf.write_text(server_tls_block(tls, verify=True) + f'include "{auth}"\n', encoding="utf-8")
    server = EmbeddedNats(tmp_path / "nats", sync_always=False, auth_conf=conf)
    server.start()
    try:
        cert, key = tls.clients["gateway"]
        env = {
            "ANTQ_CREDENTIALS_DIR": str(generated.directory),
            "ANTQ_IDENTITY": "gateway",
            "ANTQ_NATS_TLS_CA": str(tls.ca_cert),
        }
        with pytest.raises((nats.errors.Error, ssl.SSLError, OSError)):
            await nats.connect(
                server.url,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=5,
                **nats_connect_options(Settings.from_env(env)),
            )
        env |= {"ANTQ_NATS_TLS_CERT": str(cert), "ANTQ_NATS_TLS_KEY": str(key)}
        nc = await nats.connect(
            server.url, allow_reconnect=False, **nats_connect_options(Settings.from_env(env))
        )
        try:
            assert _over_tls(nc)
            await nc.flush(timeout=5)
        finally:
            await nc.close()
    finally:
        server.stop()


@pytest.mark.timeout(90)
async def test_the_dashboard_process_connects_over_tls_and_serves_its_metrics(tls_server: TlsServer) -> None:
    """``python -m services.web`` as in compose.yaml: its identity, ANTQ_NATS_TLS_CA, ANTQ_WEB_METRICS_PORT."""
    admin = await nats.connect(tls_server.server.url, allow_reconnect=False, **tls_server.options("admin"))
    try:
        await ensure_streams(admin.jetstream(), StreamLimits(dedup_window_s=3600.0))  # it reads ANTQ_UPDATES
    finally:
        await admin.drain()
    web_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "ANTQ_NATS_URL": tls_server.server.url,
        "ANTQ_CREDENTIALS_DIR": str(tls_server.generated.directory),
        "ANTQ_NATS_TLS_CA": str(tls_server.tls.ca_cert),
        "ANTQ_WEB_PORT": str(web_port),
        "ANTQ_WEB_METRICS_PORT": str(metrics_port),
    }
    env.pop("ANTQ_IDENTITY", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.web", env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert b"web_url" in line, line  # printed once connected to NATS over TLS and serving
        metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
        print(f"dashboard up over TLS ({line.decode().strip()}); /metrics {len(metrics)} bytes")
        assert "process_resident_memory_bytes" in metrics
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=30)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


# --- a three-node cluster, client connections and routes over TLS -------------------------------------------


@pytest.fixture
async def tls_cluster(tmp_path: Path) -> AsyncIterator[tuple[TlsFiles, Generated, list[EmbeddedNats]]]:
    generated = generate(tmp_path / "credentials")
    tls = generate_tls(generated.directory)
    routes = [free_port() for _ in range(3)]
    route_urls = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
    nodes: list[EmbeddedNats] = []
    try:
        for i, route in enumerate(routes, start=1):
            cluster = (
                f"server_name: n{i}\n"
                "cluster {\n  name: antq\n"
                f'  listen: "127.0.0.1:{route}"\n'
                f"  routes: [{route_urls}]\n" + server_tls_block(tls, verify=True, indent="  ") + "}\n"
            )
            conf = _server_conf(tmp_path / f"n{i}", tls, generated.server_conf, cluster)
            node = EmbeddedNats(tmp_path / f"n{i}", sync_always=False, auth_conf=conf)
            nodes.append(node)
            node.start()
        yield tls, generated, nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.timeout(90)
async def test_a_three_node_cluster_replicates_over_tls_routes(
    tls_cluster: tuple[TlsFiles, Generated, list[EmbeddedNats]],
) -> None:
    tls, generated, nodes = tls_cluster
    settings = Settings(credentials_dir=generated.directory, identity="admin", nats_tls_ca=tls.ca_cert)
    nc = await nats.connect(",".join(n.url for n in nodes).split(","), **nats_connect_options(settings))
    try:
        js = nc.jetstream()

        async def created() -> bool:
            try:  # no meta leader until the routes are up, verified both ways
                await js.add_stream(
                    StreamConfig(name="ANTQ_EVENTS", subjects=["antq.events.>"], num_replicas=3)
                )
            except (APIError, nats.errors.TimeoutError):
                return False
            return True

        await wait_for(created, timeout=60, what="an R3 stream on the TLS cluster")

        async def all_current() -> bool:
            info = await js.stream_info("ANTQ_EVENTS")
            replicas = info.cluster.replicas if info.cluster is not None else None
            return bool(replicas) and len(replicas or []) == 2 and all(r.current for r in replicas or [])

        await wait_for(all_current, timeout=60, what="both followers current")
        info = await js.stream_info("ANTQ_EVENTS")
        assert info.cluster is not None
        print(
            f"R3 stream over TLS routes: leader {info.cluster.leader}, followers "
            f"{[r.name for r in info.cluster.replicas or []]}"
        )
    finally:
        await nc.drain()
