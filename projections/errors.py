"""Exceptions of the projections: ``ProjectionError`` is the root."""

from __future__ import annotations


class ProjectionError(Exception):
    """Root of every error the projections raise on purpose."""


class FoldError(ProjectionError):
    """An event the fold cannot apply: a bug upstream (the gateway let it in). The projection halts on it."""

    def __init__(self, message: str, *, seq: int, event_id: object) -> None:
        super().__init__(f"seq {seq} (event {event_id}): {message}")
        self.seq = seq
        self.event_id = str(event_id)


class UnknownTip(FoldError):
    """A tip.assessed names a tip the projection never saw."""


class UnknownEntity(FoldError):
    """An update or end of a lifecycle entity (a model, a person under management) the projection never saw."""


class UnknownTarget(FoldError):
    """An entry.retracted names an event that is unknown, not retractable, or already retracted."""


class DuplicateEntity(FoldError):
    """A tip.received reuses a tip_id."""


class WardMismatch(FoldError):
    """An assessment or retraction is filed in another ward than the entry it is about."""


class UnknownWard(FoldError):
    """An event names a ward that is not in the 2025 list (readers set such records aside as foreign, so this
    means the ward list changed under a copy)."""
