"""Migration 0004_inventory_partition on a store holding devices: existing addresses and MACs take
their device's organisation, and the same address may then exist once per organisation."""

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from cybermission.migrations import upgrade_database

T = "2026-11-01 12:00:00"


def _device(conn: Connection, device_id: str, organization_id: str | None) -> None:
    conn.execute(
        text(
            "INSERT INTO device (id, name, organization_id, provenance, first_seen_at,"
            " last_seen_at) VALUES (:id, '', :org, '{}', :t, :t)"
        ),
        {"id": device_id, "org": organization_id, "t": T},
    )


def test_existing_rows_take_their_devices_organisation(empty_engine: Engine) -> None:
    upgrade_database(empty_engine, "0003_query_indexes")
    upgrade_database(empty_engine, "0002_inventory")
    with empty_engine.begin() as conn:
        conn.execute(
            text("INSERT INTO organization (id, slug, name, created_at) VALUES ('o1','a','A',:t)"),
            {"t": T},
        )
        _device(conn, "d1", "o1")
        _device(conn, "d2", None)
        for ip_id, address, device in (("i1", "10.0.0.1", "d1"), ("i2", "10.0.0.2", "d2")):
            conn.execute(
                text(
                    "INSERT INTO ip_address (id, address, device_id, first_seen_at, last_seen_at)"
                    " VALUES (:id, :a, :d, :t, :t)"
                ),
                {"id": ip_id, "a": address, "d": device, "t": T},
            )
        conn.execute(
            text(
                "INSERT INTO interface (id, device_id, mac, first_seen_at, last_seen_at)"
                " VALUES ('m1', 'd1', '00:24:6d:01:02:03', :t, :t)"
            ),
            {"t": T},
        )
    upgrade_database(empty_engine)
    with empty_engine.begin() as conn:
        addresses = {
            row.address: row.organization_id
            for row in conn.execute(text("SELECT address, organization_id FROM ip_address"))
        }
        macs = {
            row.mac: row.organization_id
            for row in conn.execute(text("SELECT mac, organization_id FROM interface"))
        }
        assert addresses == {"10.0.0.1": "o1", "10.0.0.2": None}
        assert macs == {"00:24:6d:01:02:03": "o1"}
        counts = conn.execute(text("SELECT absent_scans FROM device")).scalars().all()
        assert counts == [0, 0]
        # The unplaced device's address is now free in organisation o1 ...
        conn.execute(
            text(
                "INSERT INTO ip_address (id, organization_id, address, device_id, first_seen_at,"
                " last_seen_at) VALUES ('i3', 'o1', '10.0.0.2', 'd1', :t, :t)"
            ),
            {"t": T},
        )
    # ... but still taken among unplaced devices.
    with pytest.raises(IntegrityError), empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ip_address (id, address, device_id, first_seen_at, last_seen_at)"
                " VALUES ('i4', '10.0.0.2', 'd2', :t, :t)"
            ),
            {"t": T},
        )
