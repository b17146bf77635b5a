"""NATS and PostgreSQL access control: one identity per role, explicit allow lists, and what a client needs.

- ``infra.auth.permissions``: each NATS role's, office's and subscriber's publish/subscribe allow lists.
- ``infra.auth.identities``: nkey seeds and public keys, the server's ``auth.conf`` users, and
  ``nats_connect_options`` / ``read_consumer``, how a process connects and reads as its identity.
- ``infra.auth.pg_roles``: one PostgreSQL role per service, its SQL, its password files and database URL.
- ``infra.auth.credentials``: the directory ``antq auth generate`` writes (``generate``, ``revoke``, ``rotate``).
- ``infra.auth.errors``: ``AuthError``.

The two names nearly every process entry point uses are importable from the package itself.
"""

from __future__ import annotations

from infra.auth.errors import AuthError
from infra.auth.identities import nats_connect_options

__all__ = ["AuthError", "nats_connect_options"]
