"""The dashboard's figure cache (``services/web/cache.py``): kept until an update of one of the view's
provinces; an answer gathered while an update arrived is not kept; a stale answer is not kept."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from services.web.cache import FigureCache
from services.web.gather import PageData
from services.web.view import View, parse


def data(view: View, seq: int, *, stale: bool = False) -> PageData:
    return PageData(
        view=view,
        name="Tỉnh Cao Bằng",
        parent=None,
        current={"sessions_held": seq},
        previous=None,
        rows=(),
        series=(),
        point=None,
        as_of_seq=seq,
        fold_version=1,
        stale=stale,
        figures=None,
    )


VIEW = parse("province", "04", "gso-2025", {"year": "2018"})


@pytest.mark.timeout(10)
async def test_kept_until_an_update_of_its_province() -> None:
    cache = FigureCache()
    loads: list[int] = []

    async def load() -> PageData:
        loads.append(1)
        return data(VIEW, len(loads))

    assert (await cache.get(VIEW, frozenset({"04"}), load)).as_of_seq == 1
    english = msgspec.structs.replace(VIEW, lang="en")
    kept = await cache.get(english, frozenset({"04"}), load)
    assert kept.as_of_seq == 1 and kept.view.lang == "en"  # same figures, the asked language
    cache.changed("24")  # another province: still kept
    assert (await cache.get(VIEW, frozenset({"04"}), load)).as_of_seq == 1
    cache.changed("04")
    assert (await cache.get(VIEW, frozenset({"04"}), load)).as_of_seq == 2
    other_year = parse("province", "04", "gso-2025", {"year": "2017"})
    assert (await cache.get(other_year, frozenset({"04"}), load)).as_of_seq == 3
    cache.clear()  # the feed's connection was lost
    assert (await cache.get(VIEW, frozenset({"04"}), load)).as_of_seq == 4


@pytest.mark.timeout(10)
async def test_an_answer_gathered_across_an_update_or_stale_is_not_kept() -> None:
    cache = FigureCache()
    started, release = asyncio.Event(), asyncio.Event()
    seqs = iter([1, 2, 3, 4])

    async def slow() -> PageData:
        started.set()
        await release.wait()
        return data(VIEW, next(seqs))

    pending = asyncio.create_task(cache.get(VIEW, frozenset({"04"}), slow))
    await started.wait()
    cache.changed("04")  # arrives while the figures are being gathered: they may predate it
    release.set()
    assert (await pending).as_of_seq == 1
    assert (await cache.get(VIEW, frozenset({"04"}), slow)).as_of_seq == 2  # asked again, then kept
    assert (await cache.get(VIEW, frozenset({"04"}), slow)).as_of_seq == 2

    async def stale() -> PageData:
        return data(VIEW, 9, stale=True)

    country = parse("country", "", "gso-2025", {"year": "2018"})
    await cache.get(country, None, stale)
    assert cache.misses == 3
    await cache.get(country, None, stale)
    assert cache.misses == 4  # a stale answer is never kept
