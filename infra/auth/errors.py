"""The one error of ``infra.auth``: a role, an office id, a seed file or a setting that cannot be used."""

from __future__ import annotations

from infra.errors import InfraError


class AuthError(InfraError):
    """A role, an office id or a seed file that cannot be used."""
