"""Judgement end to end through the pipeline's store path (no network): advisory matches become
scored findings, change events feed history rules, a rescan with fixed firmware resolves, and
zone exposure and people's criticality reach the score, on SQLite and PostgreSQL."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import Settings
from cybermission.findings.advisories.store import import_advisories
from cybermission.findings.models import Finding, FindingStatus
from cybermission.inventory.criticality import set_criticality
from cybermission.inventory.models import Criticality, Device
from cybermission.probes import Observation, Transport
from cybermission.scans.models import ScanRun, ScanStatus, ScopeBase
from cybermission.scans.probing import HostReport
from cybermission.scans.recording import finish_run, run_state, store_reports
from cybermission.scans.scopes import attach_scope, create_scope
from cybermission.sites.allocations import create_allocation
from cybermission.sites.models import ZoneExposure
from cybermission.sites.service import create_organization, create_site, create_zone
from tests.findings.advisories.test_store import csaf

ADDRESS = "127.50.44.10"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def scan(session: Session, settings: Settings, revision: str) -> str:
    """One run that sees the M340 on port 502 with ``revision``, stored and finished."""
    run = ScanRun(targets=[ADDRESS], ports=[502], hosts_total=1)
    session.add(run)
    session.commit()
    state = run_state(session, settings, run.id)
    state.probes_run = frozenset({"modbus", "tcp", "advisory"})
    observation = Observation(
        probe="modbus",
        protocol="modbus",
        address=ADDRESS,
        port=502,
        transport=Transport.TCP,
        facts={
            "vendor": "Schneider Electric",
            "product_code": "BMX P34 2020",
            "revision": revision,
            "product_name": "Modicon M340",
        },
    )
    store_reports(session, state, [HostReport(ADDRESS, (502,), observations=[observation])])
    session.commit()
    bind = session.get_bind()
    assert isinstance(bind, Engine)
    finish_run(bind, state, ScanStatus.SUCCEEDED)
    return run.id


def advisory_finding(session: Session) -> Finding:
    return session.exec(select(Finding).where(Finding.rule_id == "advisory:ICSA-99-001-01")).one()


@pytest.fixture
def placed(session: Session, settings: Settings, tmp_path: Path) -> None:
    """The advisory imported, and the lab address in an enterprise zone."""
    path = tmp_path / "a.json"
    path.write_text(json.dumps(csaf()), encoding="utf-8")
    import_advisories(session, path, now=NOW)
    org = create_organization(session, slug="water", name="Water works")
    site = create_site(session, organization_id=org.id, slug="plant-a", name="Plant A")
    zone = create_zone(
        session, site_id=site.id, name="office", exposure=ZoneExposure.ENTERPRISE, purdue_level=4
    )
    # A scope on an organisation's site lies in the organisation's allocations (sites/allocations).
    create_allocation(session, organization_id=org.id, cidr="127.50.44.0/24")
    create_scope(session, data=ScopeBase(name="lab", cidrs=["127.50.44.0/24"]))
    attach_scope(session, scope="lab", site=site.slug, zone=zone.name)
    session.commit()


@pytest.mark.usefixtures("placed")
def test_judgement_advisory_match_is_a_scored_finding(session: Session, settings: Settings) -> None:
    scan(session, settings, "v2.5")
    finding = advisory_finding(session)
    assert finding.protocol == "advisory"
    assert finding.evidence["confidence"] == "high"
    assert finding.confidence == "high"  # a column: filterable in the API and the CLI
    assert finding.evidence["address"].startswith("127.50.44.")
    assert finding.evidence["cves"] == ["CVE-2024-0001"]
    assert finding.evidence["branch_path"][1] == "Modicon M340 CPU (part numbers BMXP34*)"
    breakdown = finding.score_breakdown
    assert breakdown["base"] == {"source": "cvss", "value": 7.5, "reason": "CVSS base score 7.5"}
    assert breakdown["factors"][1]["value"] == 1.25  # enterprise zone, from the scope
    assert finding.score == 9.4
    assert breakdown["decision"] == "act"


@pytest.mark.usefixtures("placed")
def test_judgement_criticality_set_by_people_reaches_the_score_and_survives(
    session: Session, settings: Settings
) -> None:
    scan(session, settings, "v2.5")
    device = session.exec(select(Device)).one()
    set_criticality(session, device_id=device.id, criticality=Criticality.LOW)
    session.commit()
    scan(session, settings, "v2.5")
    session.expire_all()
    kept = session.get(Device, device.id)
    assert kept is not None
    assert kept.criticality is Criticality.LOW
    finding = advisory_finding(session)
    assert finding.score_breakdown["factors"][2]["value"] == 0.85
    assert finding.score == 8.0


@pytest.mark.usefixtures("placed")
def test_judgement_fixed_firmware_resolves_and_downgrade_is_a_history_finding(
    session: Session, settings: Settings
) -> None:
    scan(session, settings, "v2.5")
    scan(session, settings, "v3.60")
    session.expire_all()
    assert advisory_finding(session).status is FindingStatus.RESOLVED
    assert not session.exec(select(Finding).where(Finding.rule_id == "firmware-downgraded")).all()
    scan(session, settings, "v2.5")
    session.expire_all()
    assert advisory_finding(session).status is FindingStatus.OPEN
    downgrade = session.exec(select(Finding).where(Finding.rule_id == "firmware-downgraded")).one()
    assert downgrade.protocol == "history"
    assert downgrade.evidence["fields"]["facts.direction"] == "downgrade"
