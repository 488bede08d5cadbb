"""The store helpers: rows built without ``__init__`` are the rows ``__init__`` builds."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.db import build_row, insert_rows, new_id
from cybermission.inventory.models import Device, Service


def test_db_build_row_fills_defaults_like_init() -> None:
    built = build_row(Device, id="d1", vendor="Acme")
    made = Device(id="d1", vendor="Acme")
    for name in Device.model_fields:
        if name in ("first_seen_at", "last_seen_at"):
            continue  # utcnow at each call
        assert getattr(built, name) == getattr(made, name), name
    assert built.first_seen_at.tzinfo is not None


def test_db_build_row_calls_each_factory_per_row() -> None:
    first, second = build_row(Device), build_row(Device)
    assert first.id != second.id
    assert first.provenance == {}
    assert first.provenance is not second.provenance


def test_db_build_row_refuses_unknown_and_missing_fields() -> None:
    with pytest.raises(TypeError, match="no field 'vendr'"):
        build_row(Device, vendr="Acme")
    with pytest.raises(TypeError, match="device_id is required"):
        build_row(Service, port=502, transport="tcp", protocol="modbus", address="127.0.0.1")


def test_db_build_row_is_stored_and_read_back(engine: Engine) -> None:
    device = build_row(Device, vendor="Acme", provenance={"vendor": {"source": "modbus"}})
    device.model = "M1"  # a built row takes later changes as any new object does
    with Session(engine) as session:
        insert_rows(session, [device])
        session.commit()
        stored = session.exec(select(Device).where(Device.id == device.id)).one()
    assert (stored.vendor, stored.model, stored.provenance) == (
        "Acme",
        "M1",
        {"vendor": {"source": "modbus"}},
    )
    assert stored.absent_scans == 0
    assert stored.first_seen_at == device.first_seen_at


def test_new_id_is_a_random_version_4_uuid_in_canonical_text() -> None:
    """new_id builds the text itself (issue 12): it must stay what str(uuid.uuid4()) gives."""
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # Every free bit takes both values: the mask keeps the random bits random.
    numbers = [uuid.UUID(t).int for t in ids]
    free = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
    ored, anded = 0, free
    for n in numbers:
        ored |= n
        anded &= n
    assert ored & free == free
    assert anded & free == 0


def test_db_timestamps_bound_alike_or_apart_are_each_stored(engine: Engine) -> None:
    """UTCDateTime's processor remembers its last value (issue 12): the same object bound
    again, then another, then the first again, each row must still get its own instant."""
    now = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    later = now + timedelta(seconds=1)
    elsewhere = datetime(2026, 12, 4, 5, 0, 1, tzinfo=timezone(timedelta(hours=2)))  # = later
    seen = [(now, now), (now, later), (later, now), (now, elsewhere), (elsewhere, now)]
    devices = [build_row(Device, first_seen_at=first, last_seen_at=last) for first, last in seen]
    with Session(engine) as session:
        insert_rows(session, devices)
        session.commit()
        stored = {d.id: d for d in session.exec(select(Device))}
    assert [(stored[d.id].first_seen_at, stored[d.id].last_seen_at) for d in devices] == [
        (now, now),
        (now, later),
        (later, now),
        (now, later),
        (later, now),
    ]
