"""FastStream's ``NatsBroker`` connecting as an identity: the ``nats.connect`` options of
``infra.auth.nats_connect_options`` turned into FastStream's ``security`` (its own ``nkeys_seed`` and
``user_credentials`` arguments are deprecated; the ``tls`` context goes into it as its ``ssl_context``) and the
identity's private inbox prefix; and the decoder of a request/reply subscriber that decodes its bodies itself
(``raw_body``)."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faststream.message import StreamMessage
from faststream.nats import NatsBroker, NatsMessage
from faststream.nats.security import NatsCredentials, NatsNKey, NatsSecurity

from infra.nats_client import server_urls

_KNOWN = {"nkeys_seed", "inbox_prefix", "user_credentials", "tls"}


def nats_broker(url: str, options: Mapping[str, Any]) -> NatsBroker:
    """``url``: one server, or every node of a cluster comma-separated (``infra.nats_client.server_urls``)."""
    servers = server_urls(url)
    unknown = set(options) - _KNOWN
    if unknown:
        raise ValueError(f"connect options FastStream is not given here: {', '.join(sorted(unknown))}")
    tls: ssl.SSLContext | None = options.get("tls")  # ANTQ_NATS_TLS_*: FastStream's security carries it
    security: NatsSecurity | None = None
    if "nkeys_seed" in options:
        security = NatsNKey.from_file(options["nkeys_seed"], ssl_context=tls)
    elif "user_credentials" in options:
        security = NatsCredentials.from_file(options["user_credentials"], ssl_context=tls)
    elif tls is not None:
        security = NatsSecurity(ssl_context=tls)
    if "inbox_prefix" in options:
        return NatsBroker(servers, logger=None, security=security, inbox_prefix=options["inbox_prefix"])
    return NatsBroker(servers, logger=None, security=security)


async def raw_body(message: StreamMessage[Any]) -> bytes:
    """A subscriber ``decoder=`` that hands the handler the bytes as they came.

    FastStream's default decoder runs before the handler: with a ``content-type: application/json`` header it
    parses the body with ``json.loads`` and lets a parse error escape; without one it parses all the same, and a
    body nested ~1,000 deep raises ``RecursionError``. Either ends the request in the framework, which swallows
    the error: no answer, no log. The services decode the bytes themselves, and always answer.
    """
    body: bytes = message.body
    return body


def raw_responder(
    broker: NatsBroker,
    subject: str,
    handler: Callable[[NatsMessage], Awaitable[None]],
    *,
    queue: str,
    workers: int,
) -> None:
    """Subscribe ``handler`` to ``subject`` in the queue group ``queue``, as every request/reply service here
    does: it gets the raw bytes (``raw_body``) and publishes its answer itself (``no_reply``), only to an inbox
    (``services.replies``)."""
    broker.subscriber(subject, queue=queue, max_workers=workers, no_reply=True, decoder=raw_body)(handler)
