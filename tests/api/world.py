"""A two-organisation world for isolation tests: each organisation has a site, a zone, a scope, a
device with a service and a finding, a finished scan run, an event and a token; plus one token
per role, global and of organisation A."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.auth.models import Role
from cybermission.auth.service import create_token
from cybermission.events import Event, EventKind
from cybermission.findings.models import Finding, FindingStatus, Severity
from cybermission.inventory.models import Device, IPAddress, Service
from cybermission.scans.models import ScanRun, ScanStatus, Scope
from cybermission.sites.models import Allocation, Organization, Site, Zone

# 127.40.0.0/16 is the api tests' range (tests/conftest.py); each organisation gets a /24 of it.
NETWORKS = {"a": "127.40.1.0/24", "b": "127.40.2.0/24"}
# What a global admin allocated to each: a /23 each, so a scope may grow a little but never into
# the other's /24 (127.40.0.0/23 for A holds A's /24 only, 127.40.2.0/23 B's).
ALLOCATIONS = {"a": "127.40.0.0/23", "b": "127.40.2.0/23"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class OrgRows:
    """The ids of one organisation's rows."""

    organization: str = ""
    allocation: str = ""
    site: str = ""
    zone: str = ""
    scope: str = ""
    device: str = ""
    finding: str = ""
    scan: str = ""
    event: int = 0
    token: str = ""
    address: str = ""


@dataclass
class World:
    orgs: dict[str, OrgRows] = field(default_factory=dict)
    # (role, "global" | "a") -> bearer secret
    tokens: dict[tuple[Role, str], str] = field(default_factory=dict)

    def auth(self, role: Role, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[(role, org)]}"}


def build_world(engine: Engine) -> World:
    world = World()
    with Session(engine, expire_on_commit=False) as session:
        for index, key in enumerate(("a", "b"), start=1):
            rows = OrgRows()
            org = Organization(slug=f"org-{key}", name=f"Organisation {key.upper()}")
            session.add(org)
            session.flush()
            site = Site(organization_id=org.id, slug=f"site-{key}", name=f"Site {key}")
            session.add(site)
            session.flush()
            zone = Zone(site_id=site.id, name="cell-1", purdue_level=1)
            allocation = Allocation(organization_id=org.id, cidr=ALLOCATIONS[key])
            scope = Scope(
                name=f"scope-{key}",
                cidrs=[NETWORKS[key]],
                site_id=site.id,
                organization_id=org.id,
                reference="CHG-1",
            )
            session.add_all([zone, allocation, scope])
            session.flush()
            scope.zone_id = zone.id
            address = f"127.40.{index}.10"
            device = Device(
                name=f"plc {key}",
                vendor="Acme",
                model=f"PLC-{key}",
                firmware="1.0",
                serial=f"SN-{key}",
                organization_id=org.id,
                site_id=site.id,
                zone_id=zone.id,
                first_seen_at=T0 + timedelta(minutes=index),
                last_seen_at=T0 + timedelta(minutes=index),
            )
            session.add(device)
            session.flush()
            service = Service(
                device_id=device.id, address=address, port=502, transport="tcp", protocol="modbus"
            )
            session.add_all([service, IPAddress(address=address, device_id=device.id)])
            session.flush()
            run = ScanRun(
                status=ScanStatus.SUCCEEDED,
                targets=[address],
                ports=[502],
                organization_id=org.id,
                site_id=site.id,
                started_at=T0,
                finished_at=T0 + timedelta(seconds=30),
            )
            session.add(run)
            session.flush()
            finding = Finding(
                dedup_key=f"rule-x|{device.id}|{service.id}",
                rule_id="modbus-unauthenticated-reachable",
                device_id=device.id,
                service_id=service.id,
                port=502,
                protocol="modbus",
                title="Modbus reachable",
                severity=Severity.HIGH,
                score=7.0,
                status=FindingStatus.OPEN,
                first_seen_at=T0 + timedelta(minutes=index),
                last_seen_at=T0 + timedelta(minutes=index),
                last_scan_run_id=run.id,
            )
            event = Event(
                kind=EventKind.ASSET_CREATED,
                organization_id=org.id,
                site_id=site.id,
                subject_id=device.id,
                payload={"address": address},
            )
            session.add_all([finding, event])
            session.flush()
            issued = create_token(
                session, name=f"target-{key}", role=Role.VIEWER, organization_id=org.id
            )
            assert event.id is not None
            rows.organization, rows.site, rows.zone, rows.scope = org.id, site.id, zone.id, scope.id
            rows.allocation = allocation.id
            rows.device, rows.finding, rows.scan = device.id, finding.id, run.id
            rows.event, rows.token, rows.address = event.id, issued.token.id, address
            world.orgs[key] = rows
        for role in Role:
            for org_key in ("global", "a"):
                organization_id = None if org_key == "global" else world.orgs["a"].organization
                issued = create_token(
                    session, name=f"{role}-{org_key}", role=role, organization_id=organization_id
                )
                world.tokens[(role, org_key)] = issued.secret
        session.commit()
    return world
