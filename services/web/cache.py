"""Pages' figures kept until the update feed says they changed.

Every figure a page shows moves only when the projection commits an event, and every commit publishes an update
of the provinces it touched (``ANTQ_UPDATES``; reporting years, ranges and pre-reform units move with the same
events). So a view's figures are kept, keyed by the view (without its language), until an update of one of its
provinces arrives; an answer gathered while an update arrived is not kept (generation check), nor a stale one.
A lost feed connection empties the cache. Staleness is bounded by the feed's lag (commit to update: a few ms,
``bench.live_lag``), and the page's own live refresh follows the same update.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from services.web.gather import PageData
from services.web.view import View

SIZE = 512

Key = tuple[str, str, str, int, int, str, str]


def key_of(view: View) -> Key:
    s = view.span
    return (view.scheme, view.kind, view.code, s.first, s.last, s.period, view.metric)


class FigureCache:
    def __init__(self, size: int = SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[Key, tuple[PageData, frozenset[str] | None]] = OrderedDict()
        self.generation = 0
        self.hits = 0
        self.misses = 0

    async def get(
        self, view: View, provinces: frozenset[str] | None, load: Callable[[], Awaitable[PageData]]
    ) -> PageData:
        """The view's figures (``provinces``: the 2025 provinces whose updates change it; None: all)."""
        key = key_of(view)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            data = found[0]
            return data if data.view == view else _with_view(data, view)
        self.misses += 1
        generation = self.generation
        data = await load()
        if generation == self.generation and not data.stale:
            self._entries[key] = (data, provinces)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return data

    def changed(self, province: str) -> None:
        """An update of ``province`` arrived: drop every view it changes."""
        self.generation += 1
        for key, (_, provinces) in list(self._entries.items()):
            if provinces is None or province in provinces:
                del self._entries[key]

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()


def _with_view(data: PageData, view: View) -> PageData:
    import msgspec

    return msgspec.structs.replace(data, view=view)
