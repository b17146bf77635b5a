"""What goes wrong in the office client library. One root; each cause its own subclass."""

from __future__ import annotations


class OfficeError(Exception):
    """The root of the office client library's errors."""


class OutboxError(OfficeError):
    """The outbox file cannot be used: unreadable, not an outbox, or another office's (the message says which)."""


class NotInOutbox(OfficeError):
    """``retry`` or ``drop`` named an outbox entry that does not exist or is in a state it cannot leave."""


class LinkDown(OfficeError):
    """No answer from the gateway: no connection, no responder, a timeout or an unreadable reply.

    The events of the request stay queued: they may or may not be stored, and resending them is safe (the
    gateway answers an event id it already holds as ``duplicate``)."""
