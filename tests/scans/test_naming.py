"""One naming of a device for the advisories: a device named only by a fact of one of its services
(an order number) gets the same advisory finding from a scan and from the re-match after an
import, and a later scan of its other ports keeps it, on SQLite and PostgreSQL."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import Settings
from cybermission.findings.advisories.store import import_advisories, import_kev
from cybermission.findings.models import Finding, FindingStatus
from cybermission.inventory.models import Device
from cybermission.probes import Observation, Transport
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.naming import advisory_identity
from cybermission.scans.probing import HostReport
from cybermission.scans.recording import finish_run, run_state, store_reports
from cybermission.scans.rematch import RematchReport, rematch_inventory
from tests.findings.advisories.test_store import csaf

ADDRESS = "127.50.45.10"
NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
ORDER_NUMBER = "1AC 315-2EH14-0AB0"
RULE_ID = "advisory:ICSA-99-001-01"

# What the controller's identification protocol says: a product name no advisory uses, and the
# order number the advisory names.
CONTROLLER_FACTS: dict[str, Any] = {
    "vendor": "Schneider Electric",
    "product_name": "Station Controller",
    "order_number": ORDER_NUMBER,
    "firmware": "V3.2.8",
}


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _scan(session: Session, settings: Settings, port: int, protocol: str, facts: Any) -> None:
    """One complete run that sees the device on ``port`` only, stored and finished (so that it
    resolves what it no longer sees)."""
    run = ScanRun(targets=[ADDRESS], ports=[port], hosts_total=1)
    session.add(run)
    session.commit()
    state = run_state(session, settings, run.id)
    state.probes_run = frozenset({protocol, "tcp", "advisory"})
    observation = Observation(
        probe=protocol,
        protocol=protocol,
        address=ADDRESS,
        port=port,
        transport=Transport.TCP,
        facts=facts,
    )
    store_reports(session, state, [HostReport(ADDRESS, (port,), observations=[observation])])
    session.commit()
    bind = session.get_bind()
    assert isinstance(bind, Engine)
    finish_run(bind, state, ScanStatus.SUCCEEDED)
    session.expire_all()


def _scan_controller(session: Session, settings: Settings) -> None:
    _scan(session, settings, 102, "s7", CONTROLLER_FACTS)


def _scan_web_page(session: Session, settings: Settings) -> None:
    """The same address's web server: nothing in it names the controller."""
    _scan(session, settings, 80, "http", {"server": "Embedded-httpd"})


def _rematch_after_kev(session: Session, tmp_path: Path) -> RematchReport:
    """KEV names the advisory's CVE: the re-match after that import, committed."""
    kev = tmp_path / "kev.json"
    kev.write_text(json.dumps({"vulnerabilities": [{"cveID": "CVE-2024-0001"}]}), "utf-8")
    report = rematch_inventory(
        session, advisory_ids=import_kev(session, kev, now=NOW).changed, now=NOW
    )
    session.commit()
    session.expire_all()
    return report


def _import(session: Session, tmp_path: Path) -> list[str]:
    path = tmp_path / "advisory.json"
    document = csaf(products=((f"Station controllers ({ORDER_NUMBER})", "< V3.2.9"),))
    path.write_text(json.dumps(document), encoding="utf-8")
    changed = import_advisories(session, path, now=NOW).changed
    session.commit()
    return changed


def _findings(session: Session) -> list[Finding]:
    return list(session.exec(select(Finding).where(Finding.rule_id == RULE_ID)).all())


def test_naming_rematch_after_import_finds_what_the_scan_finds_and_scans_keep_it(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    _scan_controller(session, settings)
    assert _findings(session) == []  # nothing imported yet
    report = rematch_inventory(session, advisory_ids=_import(session, tmp_path), now=NOW)
    session.commit()
    assert report.created == 1
    (found,) = _findings(session)
    assert found.evidence["address"] == ADDRESS
    # A scan of another port proves nothing about the controller's name: the finding stays.
    _scan_web_page(session, settings)
    (kept,) = _findings(session)
    assert (kept.id, kept.status) == (found.id, FindingStatus.OPEN)
    # The controller scanned again: the same finding, seen again, not a second one.
    _scan_controller(session, settings)
    (seen,) = _findings(session)
    assert (seen.id, seen.status) == (found.id, FindingStatus.OPEN)


def test_naming_scan_finding_is_refreshed_by_a_rematch_and_kept_by_other_scans(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    _import(session, tmp_path)
    _scan_controller(session, settings)
    (found,) = _findings(session)
    report = _rematch_after_kev(session, tmp_path)
    assert (report.created, report.updated) == (0, 1)
    (refreshed,) = _findings(session)
    assert refreshed.evidence["kev"] is True
    _scan_web_page(session, settings)
    (kept,) = _findings(session)
    assert (kept.id, kept.status) == (found.id, FindingStatus.OPEN)


def test_naming_identity_reads_attributes_code_and_every_naming_fact_once() -> None:
    device = Device(vendor="Siemens", product="S7-300", model="CPU 315-2 PN/DP", firmware="V3.2.8")
    identity = advisory_identity(
        device,
        product_code="6ES7 315-2EH14-0AB0",
        facts=[
            {"order_number": "6ES7 315-2EH14-0AB0", "product_name": "S7-300", "server": "x"},
            {"product": "SIMATIC 300", "model": 315, "product_code": " "},
        ],
    )
    assert identity is not None
    assert identity.names == ("S7-300", "CPU 315-2 PN/DP", "6ES7 315-2EH14-0AB0", "SIMATIC 300")
    assert advisory_identity(Device(vendor="Siemens"), product_code=None, facts=[]) is None
    assert advisory_identity(Device(product="S7-300"), product_code=None, facts=[]) is None


def test_naming_gateway_unit_gets_the_same_finding_from_the_scan_and_the_rematch(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    """A unit behind a gateway is a device of its own, matched by the re-match: the scan that
    finds it matches it too, and both name the gateway's address (the unit has none)."""
    path = tmp_path / "advisory.json"
    path.write_text(json.dumps(csaf()), encoding="utf-8")  # Modicon M340 before SV3.51
    import_advisories(session, path, now=NOW)
    session.commit()
    unit = {
        "unit_id": 2,
        "vendor": "Schneider Electric",
        "product_name": "Modicon M340",
        "model": "BMX P34 2020",
        "revision": "v2.5",
    }
    _scan(session, settings, 502, "modbus", {"units": [unit]})
    (found,) = _findings(session)
    child = session.get(Device, found.device_id)
    assert child is not None
    assert child.unit_id == 2
    assert found.evidence["address"] == ADDRESS
    report = _rematch_after_kev(session, tmp_path)
    assert (report.created, report.updated) == (0, 1)
    (refreshed,) = _findings(session)
    assert (refreshed.id, refreshed.evidence["address"]) == (found.id, ADDRESS)
