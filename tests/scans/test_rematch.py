"""Advisories imported after the scan: the inventory is matched again, new matches raise events,
a KEV flag set later scores the stored finding again."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.events import Event, EventKind
from cybermission.findings.advisories.store import import_advisories, import_kev
from cybermission.findings.models import Finding
from cybermission.inventory.models import Device, IPAddress
from cybermission.scans.rematch import rematch_inventory
from tests.findings.advisories.test_store import csaf

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _device(session: Session, firmware: str, address: str) -> Device:
    device = Device(
        name=f"m340-{firmware}",
        vendor="Schneider Electric",
        product="Modicon M340",
        model="BMX P34 2020",
        firmware=firmware,
    )
    session.add(device)
    session.flush()
    session.add(IPAddress(address=address, device_id=device.id))
    session.flush()
    return device


def _import(session: Session, tmp_path: Path) -> list[str]:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(csaf()), encoding="utf-8")
    return import_advisories(session, path, now=NOW).changed


def test_rematch_new_advisory_finds_the_affected_devices(session: Session, tmp_path: Path) -> None:
    affected = _device(session, "v2.5", "127.60.0.1")
    _device(session, "v3.60", "127.60.0.2")  # fixed: SV3.51 and later
    changed = _import(session, tmp_path)
    report = rematch_inventory(session, advisory_ids=changed, now=NOW)
    assert (report.advisories, report.devices, report.created) == (1, 2, 1)
    (finding,) = session.exec(select(Finding)).all()
    assert finding.device_id == affected.id
    assert finding.rule_id == "advisory:ICSA-99-001-01"
    assert finding.evidence["address"] == "127.60.0.1"
    assert finding.last_scan_run_id is None
    (event,) = session.exec(select(Event).where(Event.kind == EventKind.FINDING_CREATED)).all()
    assert event.subject_id == finding.id
    assert event.payload["cves"] == ["CVE-2024-0001"]
    assert event.payload["address"] == "127.60.0.1"
    # The same import again changes nothing, and raises no event.
    assert _import(session, tmp_path) == []
    assert rematch_inventory(session, advisory_ids=[], now=NOW).created == 0


def test_rematch_kev_later_scores_the_finding_again(session: Session, tmp_path: Path) -> None:
    _device(session, "v2.5", "127.60.0.3")
    rematch_inventory(session, advisory_ids=_import(session, tmp_path), now=NOW)
    before = session.exec(select(Finding)).one().score
    kev = tmp_path / "kev.json"
    kev.write_text(json.dumps({"vulnerabilities": [{"cveID": "CVE-2024-0001"}]}), "utf-8")
    changed = import_kev(session, kev, now=NOW).changed
    assert changed == ["ICSA-99-001-01"]
    report = rematch_inventory(session, advisory_ids=changed, now=NOW)
    assert (report.created, report.updated) == (0, 1)
    finding = session.exec(select(Finding)).one()
    assert finding.evidence["kev"] is True
    assert finding.score > before
    assert len(session.exec(select(Event)).all()) == 1  # no second "created" event
