"""Builders of intake documents (plain dicts, as an office would send them)."""

from __future__ import annotations

import uuid
from typing import Any


def new_id() -> str:
    return str(uuid.uuid4())


def base(event_type: str, ward: str = "01447", day: str = "2018-05-10", **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": event_type,
        "event_id": new_id(),
        "occurred_on": day,
        "locality": {"scheme": "gso-2025", "ward": ward},
    }
    doc.update(fields)
    return doc


def tip(ward: str = "01447", tip_id: str | None = None, **kw: Any) -> dict[str, Any]:
    fields = {"tip_id": tip_id or new_id(), "channel": "phone", "category": "drugs", "source": "resident"}
    return base("tip.received", ward, **{**fields, **kw})


def assessment(tip_doc: dict[str, Any], valuable: bool = True, **kw: Any) -> dict[str, Any]:
    return base(
        "tip.assessed", tip_doc["locality"]["ward"], tip_id=tip_doc["tip_id"], valuable=valuable, **kw
    )


def session(ward: str = "01447", level: str = "commune", attendance: int = 40, **kw: Any) -> dict[str, Any]:
    return base("session.held", ward, level=level, topics=["law"], attendance=attendance, **kw)


def pledge(ward: str = "01447", signatures: int = 10, signer: str = "household", **kw: Any) -> dict[str, Any]:
    return base("pledge.signed", ward, signer=signer, signatures=signatures, **kw)


def mediation(ward: str = "01447", outcome: str = "successful", **kw: Any) -> dict[str, Any]:
    fields = {"case_id": new_id(), "outcome": outcome, "dispute": "land"}
    return base("mediation.concluded", ward, **{**fields, **kw})


def weapons(ward: str = "01447", items: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    return base("weapons.surrendered", ward, items=items or [{"kind": "air_gun", "quantity": 1}], **kw)


def retraction(target: dict[str, Any], reason: str = "entered twice", **kw: Any) -> dict[str, Any]:
    return base(
        "entry.retracted", target["locality"]["ward"], target_event_id=target["event_id"], reason=reason, **kw
    )


def correction(target: dict[str, Any], reason: str = "miscounted", **changes: Any) -> dict[str, Any]:
    """An entry.corrected of ``target`` (an intake document: an original, or a correction, whose copy is then
    the one corrected); the copy has a new event_id and ``changes`` applied."""
    current = target["corrected"] if target["type"] == "entry.corrected" else target
    copy = {**current, "event_id": new_id(), **changes}
    return base(
        "entry.corrected",
        target["locality"]["ward"],
        target_event_id=target["event_id"],
        corrected=copy,
        reason=reason,
    )


def model(
    ward: str = "01447", level: str = "commune", kind: str = "self_managed_team", **kw: Any
) -> dict[str, Any]:
    fields = {"model_id": new_id(), "name": "Tổ tự quản", "level": level, "kind": kind}
    return base("model.established", ward, **{**fields, **kw})


def model_update(model_doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return base("model.updated", model_doc["locality"]["ward"], model_id=model_doc["model_id"], **kw)


def dissolution(model_doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return base("model.dissolved", model_doc["locality"]["ward"], model_id=model_doc["model_id"], **kw)


def youth(ward: str = "01447", **kw: Any) -> dict[str, Any]:
    return base("youth.enrolled", ward, **{"person_ref": new_id(), **kw})


def release(youth_doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return base("youth.released", youth_doc["locality"]["ward"], person_ref=youth_doc["person_ref"], **kw)


def registration(
    ward: str = "01447", unit_kind: str = "commune", year: int = 2018, **kw: Any
) -> dict[str, Any]:
    """A safety.registered of a new unit for the "An toàn về ANTT" standard of ``year`` (dated in that year)."""
    fields = {"unit_id": new_id(), "unit_kind": unit_kind, "year": year, "day": f"{year}-02-15"}
    return base("safety.registered", ward, **{**fields, **kw})


def safety_assessment(reg: dict[str, Any], achieved: bool = True, **kw: Any) -> dict[str, Any]:
    fields = {
        "unit_id": reg["unit_id"],
        "unit_kind": reg["unit_kind"],
        "year": reg["year"],
        "achieved": achieved,
        "day": f"{reg['year']}-12-20",
    }
    return base("safety.assessed", reg["locality"]["ward"], **{**fields, **kw})
