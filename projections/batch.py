"""Fold one batch against the state stored for a copy: load what the batch needs, fold, find provinces."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from events.localities import Localities
from events.schema import Recorded
from projections import store
from projections.errors import UnknownWard
from projections.fold_state import Figures, Key, StateUpdate, Value, by_period
from projections.folds import fold, keys_needed
from projections.places import UNIT_PROVINCE, is_unit_key


async def fold_batch(
    conn: asyncpg.Connection, copy: int, records: Sequence[tuple[int, Recorded]], localities: Localities
) -> tuple[StateUpdate, Figures, dict[str, str]]:
    """(state update, changes of figures by period, ward → province) for ``records``; raises FoldError
    (UnknownWard among them)."""
    state: dict[Key, Value] = {}
    asked: set[Key] = set()
    while need := keys_needed(records, state) - asked:
        state.update(await store.load_state(conn, copy, need))
        asked |= need
    update, deltas = fold(state, records)
    figures = by_period(deltas)
    provinces: dict[str, str] = {}
    for ward, _, _ in deltas:
        if ward not in provinces:
            if is_unit_key(ward):  # a pre-2025 unit as recorded: no 2025 province matches its column
                provinces[ward] = UNIT_PROVINCE
                continue
            found = localities.ward(ward)
            if found is None:
                seq, rec = next(
                    ((s, r) for s, r in records if getattr(r.event.locality, "ward", None) == ward),
                    records[0],
                )
                raise UnknownWard(f"ward {ward} is not a 2025 ward", seq=seq, event_id=rec.event.event_id)
            provinces[ward] = found.province
    return update, figures, provinces
