"""The store helpers: rows built without ``__init__`` are the rows ``__init__`` builds."""

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import cast

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, delete, event, insert
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import StatementError
from sqlmodel import Session, col, select

from cybermission import db
from cybermission.db import (
    UTCDateTime,
    _plain_insert,
    _sqlite_datetime_text,
    among,
    build_row,
    insert_rows,
    insert_values,
    json_text,
    json_value,
    new_id,
)
from cybermission.events import Event, EventKind
from cybermission.inventory.models import Device, Manufacturer, Service


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


def _stored_as_sent(engine: Engine, table: str, order_by: str) -> list[tuple[object, ...]]:
    """The rows of ``table`` as the driver reads them back, columns untranslated (a timestamp's
    text on SQLite, the JSON's text): what was sent, not what the ORM makes of it."""
    with engine.connect() as connection:
        columns = [
            c["name"] for c in sa_inspect(connection).get_columns(table) if c["name"] != "id"
        ]
        selected = ", ".join(f"CAST({c} AS TEXT)" for c in columns)
        query = f"SELECT {selected} FROM {table} ORDER BY {order_by}"
        return [tuple(row) for row in connection.exec_driver_sql(query)]


def test_db_insert_values_stores_what_the_full_insert_stores(engine: Engine) -> None:
    """insert_values binds each column through the compiled statement's processors itself
    (issue 12): the rows stored must be those SQLAlchemy's own executemany stores, byte for
    byte, for enums, timestamps (aware, naive, another zone), JSON, NULLs and text."""
    at = datetime(2026, 12, 4, 3, 0, 0, 120, tzinfo=UTC)
    rows: list[dict[str, object]] = [
        {
            "kind": kind,
            "at": when,
            "organization_id": None,
            "site_id": "site-1" if i % 2 else None,
            "scan_run_id": "run-1",
            "subject_id": f"subject-{i:02d}",
            "severity": severity,
            "payload": payload,
        }
        for i, (kind, when, severity, payload) in enumerate(
            [
                (EventKind.ASSET_CREATED, at, None, {"address": "127.0.0.1", "n": [1, 2.5]}),
                (EventKind.FINDING_CREATED, at, "high", {"title": 'é "quoted"', "x": None}),
                (EventKind.SERVICE_OPENED, at.replace(tzinfo=None), None, {}),
                (
                    EventKind.SCAN_FINISHED,
                    datetime(2026, 12, 4, 5, 0, tzinfo=timezone(timedelta(hours=2))),
                    None,
                    {"nested": {"deep": [True, False, None]}},
                ),
            ]
        )
    ]
    with Session(engine) as session:
        insert_values(session, Event, rows)
        session.commit()
    fast = _stored_as_sent(engine, "event", "subject_id")
    with Session(engine) as session:
        session.exec(delete(Event))
        session.exec(insert(Event.__table__), params=rows)  # type: ignore[attr-defined]
        session.commit()
    assert fast == _stored_as_sent(engine, "event", "subject_id")
    assert len(fast) == 4


def test_db_insert_values_of_a_row_lacking_a_column_fails_as_the_full_insert_does(
    engine: Engine,
) -> None:
    complete = {"id": new_id(), "name": "Acme"}
    with Session(engine) as session, pytest.raises(StatementError, match="name"):
        insert_values(session, Manufacturer, [complete, {"id": new_id()}])


def test_db_plain_insert_leaves_python_defaults_to_the_full_insert() -> None:
    """A column whose default Python computes per row is not bound by the plain INSERT."""
    table = Table(
        "counted",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("n", Integer, default=7),
    )
    assert _plain_insert(table, ("id",), sqlite.dialect()) is None
    assert _plain_insert(table, ("id", "n"), sqlite.dialect()) is not None


def test_db_among_selects_what_in_selects_with_one_parameter_on_postgresql(engine: Engine) -> None:
    """among() is IN on SQLite and ``= ANY(array)`` on PostgreSQL (issue 12): the same rows, and
    on PostgreSQL one parameter however many values (no list expanded into the query)."""
    devices = [build_row(Device, vendor=f"V{i}") for i in range(5)]
    wanted = sorted([d.id for d in devices[:3]] + [new_id()])  # one id that is not stored
    sent: list[tuple[str, object]] = []

    def record(*args: object) -> None:
        sent.append((str(args[2]), args[3]))

    with Session(engine) as session:
        insert_rows(session, devices)
        session.commit()
        event.listen(engine, "before_cursor_execute", record)
        try:
            found = session.exec(select(Device.id).where(among(session, col(Device.id), wanted)))
            ids = sorted(found)
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert ids == sorted(d.id for d in devices[:3])
    [(statement, parameters)] = sent
    if engine.dialect.name == "postgresql":
        assert "ANY" in statement
        assert isinstance(parameters, dict)
        assert list(parameters.values()) == [wanted]
    else:
        assert len(cast(Sequence[object], parameters)) == len(wanted)


class _Colour(StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, 2e-07, None, True], "c": {"d": 'é "q" \u2028'}},
        {"nan": float("nan"), "inf": float("-inf"), "big": 10**30, "enum": _Colour.RED},
        [],
        "text",
        None,
    ],
)
def test_db_json_text_is_the_text_of_json_dumps(value: object) -> None:
    """The store's JSON serializer (a pre-built encoder, issue 12) writes json.dumps's text."""
    assert json_text(value) == json.dumps(value)


def test_db_insert_values_encodes_a_shared_json_value_once_per_call(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows sharing one dict (findings scored alike share their breakdown) encode it once in
    an INSERT; the next INSERT encodes it again, as it may have changed in between."""
    encoded: list[object] = []
    encode = db._encode_json

    def counting(value: object) -> str:
        encoded.append(value)
        return encode(value)

    monkeypatch.setattr(db, "_encode_json", counting)
    shared: dict[str, object] = {"factors": [1, 2]}

    def rows(tag: str) -> list[dict[str, object]]:
        return [
            {
                "kind": EventKind.ASSET_CREATED,
                "at": datetime(2026, 12, 4, tzinfo=UTC),
                "organization_id": None,
                "site_id": None,
                "scan_run_id": None,
                "subject_id": f"{tag}-{i}",
                "severity": None,
                "payload": shared,
            }
            for i in range(3)
        ]

    with Session(engine) as session:
        insert_values(session, Event, rows("a"))
        assert encoded.count(shared) == 1
        shared["factors"] = [3]
        insert_values(session, Event, rows("b"))
        session.commit()
    assert encoded.count(shared) == 2
    with Session(engine) as session:
        payloads = {e.subject_id: e.payload for e in session.exec(select(Event))}
    assert payloads == {
        **{f"a-{i}": {"factors": [1, 2]} for i in range(3)},
        **{f"b-{i}": {"factors": [3]} for i in range(3)},
    }


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 12, 4, 3, 0, 0, 120, tzinfo=UTC),
        datetime(2026, 12, 4, 3, 0, 0, tzinfo=UTC),  # no microseconds: isoformat drops them
        datetime(2026, 12, 4, 1, 30, 5, 999999, tzinfo=timezone(timedelta(hours=-2))),
        datetime(999, 1, 2, 3, 4, 5),  # naive: taken as UTC
        None,
    ],
)
def test_db_sqlite_timestamp_text_is_the_dialects(value: datetime | None) -> None:
    """UTCDateTime writes SQLite's DATETIME text itself (issue 12): the text SQLAlchemy's
    chain (this type's conversion, then the dialect's formatting) makes."""
    dialect = sqlite.dialect()
    chain = sqlite.DATETIME().bind_processor(dialect)
    assert chain is not None
    expected = chain(UTCDateTime().process_bind_param(value, dialect))
    assert _sqlite_datetime_text(value) == expected
    bound = UTCDateTime().bind_processor(dialect)
    assert bound is not None
    assert bound(value) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, 2.5, null, true], "b": {"c": "\\u00e9 \\"q\\""}}',
        ' {"padded": 1} ',
        "[]",
        '"text"',
        "[NaN, -Infinity]",
        b'{"from": "psycopg", "bytes": "\xc3\xa9"}',
    ],
)
def test_db_json_value_is_what_json_loads_returns(text: str | bytes) -> None:
    """The store's JSON deserializer (json's scanner without its wrapper, issue 12)."""
    # repr: NaN is not equal to itself.
    assert repr(json_value(text)) == repr(json.loads(text))


def _refusal(read: Callable[[str | bytes], object], text: str | bytes) -> tuple[type, str] | None:
    try:
        read(text)
    except ValueError as exc:
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "[1,]", b"\\xff"])
def test_db_json_value_refuses_what_json_loads_refuses(text: str | bytes) -> None:
    refused = _refusal(json.loads, text)
    assert refused is not None
    assert _refusal(json_value, text) == refused
