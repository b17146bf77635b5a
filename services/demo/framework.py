"""The shape of a demo set: the events an article's offices would have recorded, one query (or a few), and the
rows that hold each figure beside the article's number and word.

An article rarely gives an exact number: "gần 100" (nearly: below, by at most 10%), "hơn"/"trên 12.000" (over,
by at most 10%), "khoảng 200" (about: within 5%). A set records exact figures, the demo prints them beside the article's and marks a row ✓
when the ledger's figure satisfies the article's word (``satisfies``), ✗ otherwise.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

import msgspec

from events.catalogue import CATALOGUE
from events.localities import Localities
from events.schema import TAGS

Word = Literal["exact", "nearly", "over", "about"]
"""How the article states a number: as is, "gần" (below it), "hơn"/"trên" (over it), "khoảng" (within 5%)."""
WORDS: dict[Word, str] = {"exact": "", "nearly": "gần", "over": "hơn", "about": "khoảng"}
"""The article's word for each (printed before the number; a row may print "trên" instead of "hơn")."""
ABOUT = 0.05
"""How far "khoảng" (about) may lie from the article's number: 5% of it, either way."""
NEAR = 0.10
"""How far "gần" (nearly) may lie below, and "hơn"/"trên" (over) above, the article's number: 10% of it. The
issue asks only "below" and "over"; the bound keeps a row from passing on a figure nobody would describe so (0
is below "gần 300", a million over "hơn 12.000"), so a set must record a plausible figure."""

Document = dict[str, Any]


class Row(msgspec.Struct, frozen=True, kw_only=True):
    """One figure of the article: the ledger's value is the sum of ``metrics`` (default: ``figure`` itself) in
    the answer to ``query`` (default: the set's query)."""

    figure: str
    article: int
    word: Word = "exact"
    metrics: tuple[str, ...] = ()
    query: dict[str, Any] | None = None
    said: str | None = None
    """The article's word as printed, when it is not ``WORDS[word]`` (e.g. "trên" for over)."""

    def summed(self) -> tuple[str, ...]:
        return self.metrics or (self.figure,)

    def recordable(self) -> bool:
        """Whether the catalogue has every metric the row sums (issue 10's types arrive one by one)."""
        return all(name in known_metrics() for name in self.summed())

    def article_text(self) -> str:
        word = WORDS[self.word] if self.said is None else self.said
        return f"{word} {self.article:,}".strip()


class DemoSet(msgspec.Struct, frozen=True, kw_only=True):
    """A set: its name (``antq demo NAME``), a title, the office that publishes it (``services/demo/offices.toml``),
    its events (a function of the locality data), its query and its rows."""

    name: str
    title: str
    office: str
    query: dict[str, Any]
    rows: tuple[Row, ...]
    events: Callable[[Localities], Iterator[Document]]
    source: str
    """The article (date, outlet) the figures come from."""
    notes: tuple[str, ...] = ()
    """What the reader should know about how the set was recorded."""

    def queries(self) -> list[dict[str, Any]]:
        """The distinct queries the rows need, in the order of the rows."""
        out: list[dict[str, Any]] = []
        for row in self.rows:
            query = self.query_of(row)
            if query not in out:
                out.append(query)
        return out

    def query_of(self, row: Row) -> dict[str, Any]:
        return self.query if row.query is None else row.query

    def documents(self, localities: Localities) -> tuple[list[Document], list[str]]:
        """The set's events of the types the catalogue has, and the types it does not have yet (sorted): their
        events are not sent, and the rows that count them cannot be ✓."""
        docs = list(self.events(localities))
        missing = sorted({doc["type"] for doc in docs} - TAGS)
        return [doc for doc in docs if doc["type"] in TAGS], missing


@functools.cache
def known_metrics() -> frozenset[str]:
    """Every metric name the catalogue can answer: totals and their ``.<value>`` breakdowns."""
    out: set[str] = set()
    for spec in CATALOGUE:
        counts_by = getattr(spec, "counts_by", None)  # (field, values): tips by source (issue 10)
        for name in spec.counts:
            out.add(name)
            if counts_by is not None:
                out.update(f"{name}.{value}" for value in counts_by[1])
        for fig in spec.figures:
            out.add(fig.metric)
            out.update(f"{fig.metric}.{value}" for value in fig.breakdowns(spec.owner))
    return frozenset(out)


def satisfies(value: int, article: int, word: Word) -> bool:
    """Whether the ledger's ``value`` satisfies the article's ``word`` about ``article``."""
    if word == "nearly":
        return article * (1 - NEAR) <= value < article
    if word == "over":
        return article < value <= article * (1 + NEAR)
    if word == "about":
        return abs(value - article) <= ABOUT * article
    return value == article


def value_of(row: Row, metrics: dict[str, int]) -> int:
    """The row's figure in a reply's ``metrics`` (a breakdown absent from a reply is zero)."""
    return sum(metrics.get(name, 0) for name in row.summed())


class Ids:
    """Deterministic event and entity ids of a set (uuid5 in the set's namespace): publishing the set twice
    counts nothing twice."""

    def __init__(self, namespace: str) -> None:
        self._namespace = uuid.UUID(namespace)

    def __call__(self, *parts: object) -> str:
        return str(uuid.uuid5(self._namespace, "/".join(map(str, parts))))


def legacy(commune: str, district: str | None = None, province: str | None = None) -> dict[str, str]:
    """A pre-2025 locality (``gso-pre2025``), as an office recorded it before 1 July 2025."""
    place = {"scheme": "gso-pre2025", "commune": commune}
    if district is not None:
        place["district"] = district
    if province is not None:
        place["province"] = province
    return place


def spread(first: dt.date, last: dt.date, i: int, n: int) -> str:
    """The ``i``-th of ``n`` days spread evenly from ``first`` to ``last`` (inclusive), ISO format."""
    span = (last - first).days
    return (first + dt.timedelta(days=(i * span) // max(n - 1, 1))).isoformat()


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` nearly equal whole parts (the larger first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
