"""FastStream's ``NatsBroker`` connecting as an identity: the ``nats.connect`` options of
``infra.auth.nats_connect_options`` turned into FastStream's ``security`` (its own ``nkeys_seed`` and
``user_credentials`` arguments are deprecated) and the identity's private inbox prefix."""

from __future__ import annotations

from collections.abc import Mapping

from faststream.nats import NatsBroker
from faststream.nats.security import NatsCredentials, NatsNKey, NatsSecurity

_KNOWN = {"nkeys_seed", "inbox_prefix", "user_credentials"}


def nats_broker(url: str, options: Mapping[str, str]) -> NatsBroker:
    unknown = set(options) - _KNOWN
    if unknown:
        raise ValueError(f"connect options FastStream is not given here: {', '.join(sorted(unknown))}")
    security: NatsSecurity | None = None
    if "nkeys_seed" in options:
        security = NatsNKey.from_file(options["nkeys_seed"])
    elif "user_credentials" in options:
        security = NatsCredentials.from_file(options["user_credentials"])
    if "inbox_prefix" in options:
        return NatsBroker(url, logger=None, security=security, inbox_prefix=options["inbox_prefix"])
    return NatsBroker(url, logger=None, security=security)
