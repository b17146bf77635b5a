"""The office client: submits events to the ingest gateway over request/reply.

It lives in ``services.office.client`` with the rest of the office client library (the outbox and the
store-and-forward sender); this module keeps the old import path working."""

from services.office.client import OfficeClient

__all__ = ["OfficeClient"]
