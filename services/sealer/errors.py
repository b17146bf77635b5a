"""The sealer's errors: one root, ``SealerError``, subclassed by cause."""

from __future__ import annotations


class SealerError(Exception):
    """The root of the sealer's errors."""


class SealingHalted(SealerError):
    """The sealer refuses to extend the chain: a human must look (``antq audit seals``)."""


class SealConflict(SealerError):
    """PostgreSQL already holds a different seal with this stream and number."""


class SealerSetupError(SealerError):
    """No usable signing key."""
