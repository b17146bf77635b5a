"""The office client library: an outbox on local disk (SQLite) and a sender that forwards it to the gateway.

``Outbox`` (``outbox.py``) keeps every event an office publishes, before any send, with its state: ``queued``,
``done`` (accepted or duplicate, with its stream sequence), ``rejected`` (code, message, path) or ``dropped``.
``OfficeSender`` (``sender.py``) sends what is queued in enqueue order, in batches, retrying with the same event
ids (the gateway recognises them: ``duplicate``), with exponential backoff and full jitter.
``OfficeClient`` (``client.py``) is the plain request/reply client underneath.
"""
