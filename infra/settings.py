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

        def path(name: str) -> Path | None:
            value = env.get(name)
            return Path(value) if value else None

        def port(name: str) -> int | None:
            value = env.get(name)
            if not value:
                return None
            if not value.isdigit() or int(value) > 65535:
                raise SettingsError(f"{name} is a TCP port (0 to 65535), not {value!r}")
            return int(value)

        identity = env.get("ANTQ_IDENTITY") or None
        credentials_dir = path("ANTQ_CREDENTIALS_DIR")
        # the generated auditor may only read with direct gets: that is its default mode
        auditor = (
            identity == "auditor" and credentials_dir is not None and not env.get("ANTQ_NATS_NKEY_SEED_FILE")
        )
        mode = env.get("ANTQ_READ_MODE") or ("direct" if auditor else "consumer")
        if mode not in ("consumer", "direct"):
            raise SettingsError(f"ANTQ_READ_MODE is consumer or direct, not {mode!r}")
        return cls(
            nats_url=env.get("ANTQ_NATS_URL") or None,
            nats_creds=path("ANTQ_NATS_CREDS"),
            nats_nkey_seed_file=path("ANTQ_NATS_NKEY_SEED_FILE"),
            read_consumer=env.get("ANTQ_READ_CONSUMER") or None,
            read_mode="direct" if mode == "direct" else "consumer",
            database_url=env.get("ANTQ_DATABASE_URL") or None,
            offices_path=path("ANTQ_OFFICES"),
            data_dir=path("ANTQ_DATA_DIR"),
            dedup_window_s=float(env.get("ANTQ_DEDUP_WINDOW_S", DAY)),
            metrics_port=port("ANTQ_METRICS_PORT"),
            ack_timeout_s=float(env.get("ANTQ_ACK_TIMEOUT_S", 10.0)),
            update_key_file=path("ANTQ_UPDATE_KEY_FILE"),
            query_metrics_port=port("ANTQ_QUERY_METRICS_PORT"),
            sealer_metrics_port=port("ANTQ_SEALER_METRICS_PORT"),
            credentials_dir=credentials_dir,
            identity=identity,
            projection_workers=_workers(env.get("ANTQ_PROJECTION_WORKERS") or "1"),
        )


def _workers(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 34:
        raise SettingsError(f"ANTQ_PROJECTION_WORKERS is a number of workers from 1 to 34, not {value!r}")
    return int(value)
