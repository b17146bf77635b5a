"""Settings from the environment. Unset URLs mean: start the embedded servers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def path(name: str) -> Path | None:
            value = env.get(name)
            return Path(value) if value else None

        mode = env.get("ANTQ_READ_MODE") or "consumer"
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
            metrics_port=int(env["ANTQ_METRICS_PORT"]) if env.get("ANTQ_METRICS_PORT") else None,
            ack_timeout_s=float(env.get("ANTQ_ACK_TIMEOUT_S", 10.0)),
            update_key_file=path("ANTQ_UPDATE_KEY_FILE"),
        )
