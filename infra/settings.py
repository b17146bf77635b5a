"""Settings from the environment. Unset URLs mean: start the embedded servers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from infra.errors import InfraError

DAY = 86_400.0
ReadMode = Literal["consumer", "direct"]


class SettingsError(InfraError, ValueError):
    """A setting with a value that cannot be used."""


ENV_NAMES = (
    "ANTQ_NATS_URL",
    "ANTQ_NATS_CREDS",
    "ANTQ_NATS_NKEY_SEED_FILE",
    "ANTQ_READ_CONSUMER",
    "ANTQ_READ_MODE",
    "ANTQ_DATABASE_URL",
    "ANTQ_OFFICES",
    "ANTQ_DATA_DIR",
    "ANTQ_DEDUP_WINDOW_S",
    "ANTQ_METRICS_PORT",
    "ANTQ_ACK_TIMEOUT_S",
    "ANTQ_UPDATE_KEY_FILE",
    "ANTQ_QUERY_METRICS_PORT",
    "ANTQ_SEALER_METRICS_PORT",
    "ANTQ_CREDENTIALS_DIR",
    "ANTQ_IDENTITY",
    "ANTQ_NATS_TLS_CA",
    "ANTQ_NATS_TLS_CERT",
    "ANTQ_NATS_TLS_KEY",
    "ANTQ_STREAM_REPLICAS",
    "ANTQ_WEB_METRICS_PORT",
    "ANTQ_STREAM_PLACEMENT_CLUSTER",
    "ANTQ_STREAM_PLACEMENT_TAGS",
    "ANTQ_PROJECTION_WORKERS",
)
"""Every environment variable ``Settings.from_env`` reads, and none other (it refuses to read a name not listed
here): ``tests/test_compose.py`` checks the deployment's environment against this tuple."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    nats_url: str | None = None
    nats_creds: Path | None = None
    # the seed file of an nkey user (ANTQ_NATS_NKEY_SEED_FILE; written by `antq auth generate`)
    nats_nkey_seed_file: Path | None = None
    # the consumer name an auditor reads with (ANTQ_READ_CONSUMER; default: derived from the nkey seed)
    read_consumer: str | None = None
    # how the audit commands read streams (ANTQ_READ_MODE): "consumer" or "direct" (batched direct gets, no
    # consumer: the generated auditor identity may only do this)
    read_mode: ReadMode = "consumer"
    database_url: str | None = None
    offices_path: Path | None = None
    data_dir: Path | None = None
    dedup_window_s: float = DAY
    ack_timeout_s: float = 10.0  # how long a JetStream publish may wait for its ack
    metrics_port: int | None = None  # serve Prometheus /metrics on this port (ANTQ_METRICS_PORT)
    # the projection's update signing key, an nkey seed file (ANTQ_UPDATE_KEY_FILE; created if missing; default:
    # <data dir>/updates.nk, else an ephemeral key: infra/update_signing.py)
    update_key_file: Path | None = None
    query_metrics_port: int | None = None  # the query service's /metrics (ANTQ_QUERY_METRICS_PORT)
    sealer_metrics_port: int | None = None  # the sealer's /metrics (ANTQ_SEALER_METRICS_PORT)
    # the directory of the identities (``antq auth generate``, ``antq dev up``): ANTQ_CREDENTIALS_DIR; a process
    # connects as ``<credentials_dir>/<identity>.nk`` unless ANTQ_NATS_NKEY_SEED_FILE names a seed itself
    credentials_dir: Path | None = None
    # the identity a process runs as in ``credentials_dir`` (ANTQ_IDENTITY: ``gateway``, ``office-<id>``, …)
    identity: str | None = None
    # TLS of every NATS connection (``antq auth generate`` writes them under <credentials dir>/tls; or the
    # operator's own): the CA that signed the servers' certificate (ANTQ_NATS_TLS_CA), and a client certificate
    # and its key for servers that verify clients (ANTQ_NATS_TLS_CERT, ANTQ_NATS_TLS_KEY: both or neither)
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None
    # how many copies of each stream a JetStream cluster keeps (ANTQ_STREAM_REPLICAS: 1, or 3 on a cluster)
    stream_replicas: int = 1
    web_metrics_port: int | None = None  # the dashboard's /metrics, its process only (ANTQ_WEB_METRICS_PORT)
    # which cluster / which tagged servers hold the streams (ANTQ_STREAM_PLACEMENT_CLUSTER, ANTQ_STREAM_PLACEMENT_TAGS
    # comma-separated); unset: wherever the servers put them
    stream_placement_cluster: str | None = None
    stream_placement_tags: tuple[str, ...] = ()
    # worker processes of the statistics projection, each folding the provinces of its partition
    # (ANTQ_PROJECTION_WORKERS, 1 to 34; projections/partitions.py)
    projection_workers: int = 1

    def as_identity(self, name: str) -> Settings:
        """These settings for a process that runs as ``name``, unless ANTQ_IDENTITY chose another already."""
        return self if self.identity is not None else replace(self, identity=name)

    @property
    def seed_file(self) -> Path | None:
        """The nkey seed this process connects with: ANTQ_NATS_NKEY_SEED_FILE, else its identity's seed in
        the credentials directory, else none."""
        if self.nats_nkey_seed_file is not None:
            return self.nats_nkey_seed_file
        if self.credentials_dir is not None and self.identity is not None:
            return self.credentials_dir / f"{self.identity}.nk"
        return None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            # a new setting is listed in ENV_NAMES too: the deployment test checks compose.yaml against it
            if name not in ENV_NAMES:
                raise SettingsError(f"{name} is not in infra.settings.ENV_NAMES")
            return env.get(name)

        def path(name: str) -> Path | None:
            value = get(name)
            return Path(value) if value else None

        def port(name: str) -> int | None:
            value = get(name)
            if not value:
                return None
            if not value.isdigit() or int(value) > 65535:
                raise SettingsError(f"{name} is a TCP port (0 to 65535), not {value!r}")
            return int(value)

        identity = get("ANTQ_IDENTITY") or None
        credentials_dir = path("ANTQ_CREDENTIALS_DIR")
        # the generated auditor may only read with direct gets: that is its default mode
        auditor = (
            identity == "auditor" and credentials_dir is not None and not get("ANTQ_NATS_NKEY_SEED_FILE")
        )
        mode = get("ANTQ_READ_MODE") or ("direct" if auditor else "consumer")
        if mode not in ("consumer", "direct"):
            raise SettingsError(f"ANTQ_READ_MODE is consumer or direct, not {mode!r}")
        tls_cert, tls_key = path("ANTQ_NATS_TLS_CERT"), path("ANTQ_NATS_TLS_KEY")
        if (tls_cert is None) != (tls_key is None):
            raise SettingsError("ANTQ_NATS_TLS_CERT and ANTQ_NATS_TLS_KEY go together: set both or neither")
        replicas = get("ANTQ_STREAM_REPLICAS") or "1"
        if replicas not in ("1", "2", "3", "4", "5"):
            raise SettingsError(
                f"ANTQ_STREAM_REPLICAS is a number of stream copies, 1 to 5, not {replicas!r}"
            )
        return cls(
            nats_url=get("ANTQ_NATS_URL") or None,
            nats_creds=path("ANTQ_NATS_CREDS"),
            nats_nkey_seed_file=path("ANTQ_NATS_NKEY_SEED_FILE"),
            read_consumer=get("ANTQ_READ_CONSUMER") or None,
            read_mode="direct" if mode == "direct" else "consumer",
            database_url=get("ANTQ_DATABASE_URL") or None,
            offices_path=path("ANTQ_OFFICES"),
            data_dir=path("ANTQ_DATA_DIR"),
            dedup_window_s=float(get("ANTQ_DEDUP_WINDOW_S") or DAY),
            metrics_port=port("ANTQ_METRICS_PORT"),
            ack_timeout_s=float(get("ANTQ_ACK_TIMEOUT_S") or 10.0),
            update_key_file=path("ANTQ_UPDATE_KEY_FILE"),
            query_metrics_port=port("ANTQ_QUERY_METRICS_PORT"),
            sealer_metrics_port=port("ANTQ_SEALER_METRICS_PORT"),
            credentials_dir=credentials_dir,
            identity=identity,
            nats_tls_ca=path("ANTQ_NATS_TLS_CA"),
            nats_tls_cert=tls_cert,
            nats_tls_key=tls_key,
            stream_replicas=int(replicas),
            web_metrics_port=port("ANTQ_WEB_METRICS_PORT"),
            stream_placement_cluster=get("ANTQ_STREAM_PLACEMENT_CLUSTER") or None,
            stream_placement_tags=tuple(
                t.strip() for t in (get("ANTQ_STREAM_PLACEMENT_TAGS") or "").split(",") if t.strip()
            ),
            projection_workers=_workers(get("ANTQ_PROJECTION_WORKERS") or "1"),
        )


def _workers(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 34:
        raise SettingsError(f"ANTQ_PROJECTION_WORKERS is a number of workers from 1 to 34, not {value!r}")
    return int(value)
