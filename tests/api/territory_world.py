"""Six organisations in four sectors, rows written directly (fast, both stores): each with devices,
services, findings of several severities, and an admin and a viewer token; plus a coordinator."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.auth.models import Role
from cybermission.auth.service import create_token
from cybermission.findings.models import Finding, FindingStatus, FindingTransition, Severity
from cybermission.inventory.models import Device, IPAddress, Service
from cybermission.sites.models import Organization, Sector, Site

T0 = datetime(2026, 9, 1, tzinfo=UTC)
# slug -> (sector, [(protocol, port, [severities of its open findings]) per device])
PLAN: dict[str, tuple[Sector, list[tuple[str, int, list[Severity]]]]] = {
    "water-north": (
        Sector.WATER,
        [("modbus", 502, [Severity.HIGH]), ("modbus", 502, [Severity.CRITICAL, Severity.LOW])],
    ),
    "water-south": (Sector.WATER, [("modbus", 502, [Severity.HIGH]), ("bacnet", 47808, [])]),
    "water-east": (Sector.WATER, [("s7", 102, [Severity.MEDIUM])]),
    "grid": (Sector.ENERGY, [("iec104", 2404, [Severity.CRITICAL]), ("bacnet", 47808, [])]),
    "transit": (Sector.TRANSPORT, [("enip", 44818, [Severity.HIGH])]),
    "hospital": (Sector.HEALTH, [("bacnet", 47808, [Severity.MEDIUM, Severity.HIGH])]),
}


@dataclass
class Member:
    slug: str
    id: str = ""
    devices: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    serials: list[str] = field(default_factory=list)
    admin: str = ""
    viewer: str = ""


@dataclass
class TerritoryWorld:
    members: dict[str, Member] = field(default_factory=dict)
    coordinator: str = ""

    @staticmethod
    def auth(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}


def build_territory(engine: Engine) -> TerritoryWorld:
    world = TerritoryWorld()
    with Session(engine, expire_on_commit=False) as session:
        for index, (slug, (sector, devices)) in enumerate(PLAN.items(), start=1):
            org = Organization(slug=slug, name=slug.title(), sector=sector)
            session.add(org)
            session.flush()
            site = Site(organization_id=org.id, slug=f"site-{slug}", name=f"Site {slug}")
            session.add(site)
            session.flush()
            member = Member(slug=slug, id=org.id)
            for number, (protocol, port, severities) in enumerate(devices, start=1):
                address = f"127.44.{index}.{number}"
                device = Device(
                    name=f"{slug}-plc-{number}",
                    vendor="Acme",
                    model=f"M-{number}",
                    serial=f"SN-{slug}-{number}",
                    organization_id=org.id,
                    site_id=site.id,
                )
                session.add(device)
                session.flush()
                service = Service(
                    device_id=device.id,
                    address=address,
                    port=port,
                    transport="tcp",
                    protocol=protocol,
                )
                session.add_all(
                    [
                        service,
                        IPAddress(organization_id=org.id, address=address, device_id=device.id),
                    ]
                )
                session.flush()
                for rank, severity in enumerate(severities):
                    finding = Finding(
                        dedup_key=f"rule-{rank}|{device.id}|{service.id}",
                        rule_id=f"rule-{rank}",
                        device_id=device.id,
                        service_id=service.id,
                        port=port,
                        protocol=protocol,
                        title="t",
                        severity=severity,
                        status=FindingStatus.OPEN,
                        first_seen_at=T0,
                        last_seen_at=T0,
                    )
                    session.add(finding)
                    session.flush()
                    session.add(
                        FindingTransition(
                            finding_id=finding.id,
                            to_status=FindingStatus.OPEN,
                            actor="system",
                            reason="condition seen",
                            at=T0 + timedelta(days=index),
                        )
                    )
                member.devices.append(device.id)
                member.names.append(device.name)
                member.addresses.append(address)
                member.serials.append(device.serial or "")
            for role, attr in ((Role.ADMIN, "admin"), (Role.VIEWER, "viewer")):
                issued = create_token(
                    session, name=f"{slug}-{role}", role=role, organization_id=org.id
                )
                setattr(member, attr, issued.secret)
            world.members[slug] = member
        world.coordinator = create_token(session, name="metropolis", role=Role.COORDINATOR).secret
        session.commit()
    return world
