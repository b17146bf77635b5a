"""The auditors' errors: one root, subclassed by cause."""

from __future__ import annotations


class AuditError(Exception):
    """Root of the auditors' errors: a scope that names nothing, a history that cannot be folded."""


class UnfoldableHistory(AuditError):
    """A stored record cannot be decoded or folded: the log holds what the gateway should have refused."""
