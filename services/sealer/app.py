"""Composition root of the sealer: the signing key and the configuration from settings and the environment."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from infra.auth import nats_connect_options
from infra.seal_keys import Signer, load_or_create, load_seed_file
from infra.settings import Settings
from services.sealer.errors import SealerSetupError as SealerSetupError  # importable from here as before
from services.sealer.service import Sealer, SealerConfig

log = logging.getLogger("antq.sealer")

SEED_FILE_ENV = "ANTQ_SEAL_SEED_FILE"
SEED_FILE_NAME = "sealer.nk"


def resolve_signer(
    seed_file: Path | None, data_dir: Path | None, env: Mapping[str, str] | None = None
) -> Signer:
    """The seed named by ``seed_file`` or ANTQ_SEAL_SEED_FILE (which must exist), else ``data_dir/sealer.nk``,
    generated there (mode 0600) on first use."""
    env = os.environ if env is None else env
    named = seed_file or (Path(env[SEED_FILE_ENV]) if env.get(SEED_FILE_ENV) else None)
    if named is not None:
        if not named.exists():
            raise SealerSetupError(f"seal seed file {named} does not exist")
        signer = load_seed_file(named)
        log.info("sealing with the key in %s; public key %s", named, signer.public_key)
        return signer
    if data_dir is None:
        raise SealerSetupError(f"no signing key: set {SEED_FILE_ENV} or give a data directory")
    path = data_dir / SEED_FILE_NAME
    signer, created = load_or_create(path)
    if created:
        log.warning("generated a new seal signing key in %s; public key %s", path, signer.public_key)
    else:
        log.info("sealing with the key in %s; public key %s", path, signer.public_key)
    return signer


def build_sealer(
    settings: Settings,
    *,
    nats_url: str,
    database_url: str,
    seed_file: Path | None = None,
    data_dir: Path | None = None,
    every_events: int = 10_000,
    every_seconds: float = 60.0,
) -> Sealer:
    signer = resolve_signer(seed_file, data_dir or settings.data_dir)
    return Sealer(
        SealerConfig(
            nats_url=nats_url,
            database_url=database_url,
            nats_options=nats_connect_options(settings),
            signer=signer,
            every_events=every_events,
            every_seconds=every_seconds,
        )
    )
