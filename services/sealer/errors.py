"""The sealer's errors: one root, ``SealerError``, subclassed by cause."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.sealer.findings import Finding


class SealerError(Exception):
    """The root of the sealer's errors."""


class SealingHalted(SealerError):
    """The sealer refuses to extend the chain: a human must look (``antq audit seals``)."""


class SealConflict(SealerError):
    """PostgreSQL already holds a different seal with this stream and number."""


class RestoreRefused(SealerError):
    """A restore the chain cannot record: the restored stream does not hold what the seals sealed (``findings``
    say what differs), or there is nothing to check it against."""

    def __init__(self, message: str, *, findings: Sequence[Finding] = ()) -> None:
        super().__init__(message)
        self.findings = tuple(findings)


class NothingToAccept(SealerError):
    """The chain already records the stream's creation time: no restore to record."""


class SealerSetupError(SealerError):
    """No usable signing key."""
