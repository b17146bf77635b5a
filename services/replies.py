"""Where a service may send its answer: only to an inbox.

A request names the subject its answer goes to. A service that answered on any subject would publish for
whoever asks: ``reply="antq.events.01.00004.session"`` made the gateway store its own error reply in
``ANTQ_EVENTS``. So the gateway and the query service process a request only when its reply subject is an
inbox, ``_INBOX.`` followed by tokens (an identity's own is ``_INBOX.<public key>``, see
``infra.auth.permissions.inbox_prefix``; nats-py's default is ``_INBOX.<random>``), with no wildcard and no
empty token. Any other request, and one with no reply subject at all, is dropped unprocessed: counted, and logged as a
warning at most once per ``LOG_EVERY_S`` seconds (with the number dropped since).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

INBOX = "_INBOX"
LOG_EVERY_S = 10.0
_MAX_SUBJECT = 512  # longer is not an inbox anyone was given; keeps the log line short too


def is_inbox(subject: str | None) -> bool:
    """True for ``_INBOX.<token>[.<token>…]``: no wildcard (``*``, ``>``), no empty token, no whitespace."""
    if not subject or len(subject) > _MAX_SUBJECT or not subject.startswith(INBOX + "."):
        return False
    tokens = subject.split(".")
    return all(token and "*" not in token and ">" not in token for token in tokens) and (
        subject.isprintable() and not any(c.isspace() for c in subject)
    )


def client_of(inbox: str) -> str:
    """Who asked, as far as a reply subject tells: its inbox prefix, the first two tokens (``_INBOX.<public
    key>`` of an identity on the secure stack; ``_INBOX.<random>`` of one nats-py connection)."""
    return ".".join(inbox.split(".", 2)[:2])


@dataclass
class DroppedRequests:
    """Requests dropped for their reply subject, per reason (``no_reply``, ``not_inbox``), and their log."""

    service: str
    logger: logging.Logger
    counts: dict[str, int] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    _last_log: float | None = field(default=None, init=False, repr=False)
    _unlogged: int = field(default=0, init=False, repr=False)

    @property
    def total(self) -> int:
        return sum(self.counts.copy().values())

    def accept(self, subject: str, reply: str | None) -> bool:
        """True when the request may be processed; otherwise it is counted and (rate-limited) logged."""
        if is_inbox(reply):
            return True
        reason = "no_reply" if not reply else "not_inbox"
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self._unlogged += 1
        now = self.clock()
        if self._last_log is None or now - self._last_log >= LOG_EVERY_S:
            shown = (reply or "")[:120]
            self.logger.warning(
                "%s dropped a request on %s: its reply subject %r is not an inbox (_INBOX.…); %d dropped "
                "since the last such warning, %d in all",
                self.service,
                subject[:120],
                shown,
                self._unlogged,
                self.total,
            )
            self._last_log = now
            self._unlogged = 0
        return False
