"""The dashboard (``python -m services.web``): read-only web pages of the figures, Vietnamese first.

Modules: ``view`` (what a page shows, parsed from and written back to its URL), ``gather`` (the figures of a
view from the query service, as the read-only ``web`` identity), ``coords`` (where units sit on the map),
``svg`` (the map and the charts, drawn by us), ``text`` (Vietnamese and English words), ``page`` (the HTML),
``live`` (the update feed fanned out as server-sent events), ``app`` (the one composition root: routes,
config, start and stop). The app never writes: it asks the query service and reads ``ANTQ_UPDATES``.
"""
