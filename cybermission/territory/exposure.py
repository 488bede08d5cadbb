"""The territory's exposure: each organisation's numbers, split into shared and hidden parts,
summed by sector and over the territory under the withholding rule (privacy.py).

Every number is the same count an organisation reads of itself (its dashboard and lists):
devices; open and acknowledged findings by severity; devices with an open service per protocol;
devices with an active finding of a rule tagged ``end-of-life``; active findings of advisories on
CISA's known-exploited list.
"""

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal
from sqlmodel import Session, col, select

from cybermission.errors import NotFoundError
from cybermission.findings.advisories.drafts import RULE_PREFIX
from cybermission.findings.models import Advisory, Finding, Severity
from cybermission.findings.service import ACTIVE_STATUSES
from cybermission.inventory.models import Device, Service
from cybermission.rules.loader import Rule
from cybermission.sites.models import Organization, Sector
from cybermission.territory.privacy import WITHHELD, Cell, Part, Shown, withhold_row
from cybermission.territory.shares import Disclosure, disclosed_devices, load_disclosure

SEVERITIES = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO)
DEVICES = "devices"
EOL = "devices_past_end_of_life"
KEV = "unpatched_kev_findings"
OPEN = "open_findings"
PROTOCOLS = "exposed_protocols"
END_OF_LIFE_TAG = "end-of-life"

# metric key ("devices", "open_findings/high", "exposed_protocols/modbus") -> org -> part
Parts = dict[str, dict[str, Part]]


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    slug: str
    name: str
    sector: Sector


@dataclass
class Territory:
    """Who is in the territory, what each shares, and every number split into parts."""

    members: list[Member]
    disclosure: Disclosure
    parts: Parts = field(default_factory=dict)

    def metric_keys(self) -> list[str]:
        """The metrics held, the fixed ones first in their order, then the others by name."""
        fixed = [DEVICES, *(f"{OPEN}/{s}" for s in SEVERITIES), EOL, KEV]
        return [k for k in fixed if k in self.parts] + sorted(set(self.parts) - set(fixed))

    def hiding(self, members: Iterable[Member]) -> frozenset[str]:
        return frozenset(m.id for m in members if m.id not in self.disclosure.full)

    def cell(self, key: str, members: Collection[Member]) -> Cell:
        ids = {m.id for m in members}
        parts = {org: p for org, p in self.parts.get(key, {}).items() if org in ids}
        return Cell(parts=parts, hiding=self.hiding(members))


@dataclass(frozen=True, slots=True)
class View:
    """Whose numbers are counted, and what of them the reader may see: the coordinator's view of
    every organisation under its shares, or one organisation's view of itself (all of it)."""

    members: list[Member]
    disclosure: Disclosure
    subject: str  # "territory", or the organisation's name

    @property
    def is_territory(self) -> bool:
        return self.subject == TERRITORY


TERRITORY = "territory"


def territory_view(session: Session) -> View:
    return View(load_members(session), load_disclosure(session), TERRITORY)


def organization_view(session: Session, *, organization_id: str) -> View:
    """One organisation reading its own numbers: it alone, everything of it disclosed (so the
    withholding rule withholds nothing; privacy.py counts fully shared parts as shown)."""
    members = [m for m in load_members(session) if m.id == organization_id]
    if not members:
        raise NotFoundError("organisation not found")
    return View(members, Disclosure(full=frozenset({organization_id})), members[0].name)


def view_of(session: Session, view: View | None) -> View:
    return territory_view(session) if view is None else view


def end_of_life_rule_ids(rules: Iterable[Rule]) -> frozenset[str]:
    """The rules whose finding says a device is past its end of life (tagged ``end-of-life``)."""
    return frozenset(rule.id for rule in rules if END_OF_LIFE_TAG in rule.info.tags)


def load_members(session: Session) -> list[Member]:
    rows = session.exec(select(Organization).order_by(col(Organization.slug))).all()
    return [Member(o.id, o.slug, o.name, o.sector) for o in rows]


def add_parts(parts: Parts, key: str, rows: Iterable[Any]) -> None:
    """Rows of (organisation, shared 0/1, count) into ``parts[key]``."""
    for organization_id, shared, count in rows:
        if organization_id is None:
            continue
        bucket = parts.setdefault(key, {})
        addition = Part(shown=int(count)) if shared else Part(hidden=int(count))
        bucket[organization_id] = bucket.get(organization_id, Part()) + addition


def load_territory(
    session: Session, *, eol_rule_ids: Collection[str], view: View | None = None
) -> Territory:
    """The numbers of the view's organisations (every one by default), each split by what it
    discloses (one query per metric)."""
    seen = view_of(session, view)
    disclosure = seen.disclosure
    shared = case((disclosed_devices(disclosure), 1), else_=0)
    org = col(Device.organization_id)
    territory = Territory(members=seen.members, disclosure=disclosure)
    parts = territory.parts

    devices = select(org, shared, func.count()).where(org.is_not(None)).group_by(org, shared)
    add_parts(parts, DEVICES, session.exec(devices))

    active = col(Finding.status).in_(ACTIVE_STATUSES)
    findings = (
        select(org, shared, Finding.severity, func.count())
        .select_from(Finding)
        .join(Device, col(Device.id) == col(Finding.device_id))
        .where(active)
        .group_by(org, shared, col(Finding.severity))
    )
    by_severity: dict[Severity, list[tuple[str | None, int, int]]] = defaultdict(list)
    for organization_id, flag, severity, count in session.exec(findings):
        by_severity[Severity(severity)].append((organization_id, flag, count))
    for severity in SEVERITIES:
        add_parts(parts, f"{OPEN}/{severity}", by_severity.get(severity, []))
        parts.setdefault(f"{OPEN}/{severity}", {})

    speaking = func.count(func.distinct(Service.device_id))
    protocols = (
        select(org, shared, Service.protocol, speaking)
        .select_from(Service)
        .join(Device, col(Device.id) == col(Service.device_id))
        .where(col(Service.is_open))
        .group_by(org, shared, col(Service.protocol))
    )
    by_protocol: dict[str, list[tuple[str | None, int, int]]] = defaultdict(list)
    for organization_id, flag, protocol, count in session.exec(protocols):
        by_protocol[protocol].append((organization_id, flag, count))
    for protocol, rows in by_protocol.items():
        add_parts(parts, f"{PROTOCOLS}/{protocol}", rows)

    eol = (
        select(org, shared, func.count(func.distinct(Finding.device_id)))
        .select_from(Finding)
        .join(Device, col(Device.id) == col(Finding.device_id))
        .where(active, col(Finding.rule_id).in_(sorted(eol_rule_ids)))
        .group_by(org, shared)
    )
    parts.setdefault(EOL, {})
    if eol_rule_ids:
        add_parts(parts, EOL, session.exec(eol))

    kev = (
        select(org, shared, func.count())
        .select_from(Finding)
        .join(Device, col(Device.id) == col(Finding.device_id))
        .join(Advisory, col(Finding.rule_id) == literal(RULE_PREFIX) + col(Advisory.id))
        .where(active, col(Advisory.kev))
        .group_by(org, shared)
    )
    parts.setdefault(KEV, {})
    add_parts(parts, KEV, session.exec(kev))
    return territory


def nest(flat: Mapping[str, Shown]) -> dict[str, Any]:
    """``{"open_findings/high": 3}`` -> ``{"open_findings": {"high": 3}}``."""
    nested: dict[str, Any] = {OPEN: {}, PROTOCOLS: {}}
    for key, value in flat.items():
        group, _, name = key.partition("/")
        if name:
            nested.setdefault(group, {})[name] = value
        else:
            nested[key] = value
    return nested


@dataclass(frozen=True, slots=True)
class ExposureReport:
    """What the coordinator sees: every value a number or "withheld"."""

    generated_at: datetime
    threshold: int
    territory: dict[str, Any]
    sectors: list[dict[str, Any]]
    organizations: list[dict[str, Any]]


def sectors_of(members: Iterable[Member]) -> dict[Sector, list[Member]]:
    grouped: dict[Sector, list[Member]] = {}
    for member in members:
        grouped.setdefault(member.sector, []).append(member)
    return dict(sorted(grouped.items()))


def aggregate(
    territory: Territory, *, threshold: int
) -> tuple[dict[str, Shown], dict[Sector, dict[str, Shown]]]:
    """Every number of the territory and of each sector, under the withholding rule."""
    grouped = sectors_of(territory.members)
    sector_values: dict[Sector, dict[str, Shown]] = {s: {} for s in grouped}
    total_values: dict[str, Shown] = {}
    for key in territory.metric_keys():
        cells = [territory.cell(key, members) for members in grouped.values()]
        shown, total = withhold_row(
            cells, territory.cell(key, territory.members), threshold=threshold
        )
        for sector, value in zip(grouped, shown, strict=True):
            sector_values[sector][key] = value
        total_values[key] = total
    return total_values, sector_values


def exposure_report(territory: Territory, *, threshold: int, now: datetime) -> ExposureReport:
    """Sectors and the territory under the rule; an organisation's own row only for what it
    shared (everything for a full share, its shared devices for a class share)."""
    grouped = sectors_of(territory.members)
    total_values, sector_values = aggregate(territory, threshold=threshold)
    organizations = []
    for member in territory.members:
        level = territory.disclosure.level(member.id)
        values: dict[str, Shown] = {}
        for key in territory.metric_keys():
            part = territory.parts.get(key, {}).get(member.id, Part())
            values[key] = WITHHELD if level is None else part.shown
        organizations.append(
            {
                "id": member.id,
                "slug": member.slug,
                "name": member.name,
                "sector": member.sector,
                "share": str(level) if level else "none",
                "device_classes": sorted(territory.disclosure.classes.get(member.id, ())),
                "metrics": nest(values),
            }
        )
    return ExposureReport(
        generated_at=now,
        threshold=threshold,
        territory={"organizations": len(territory.members), "metrics": nest(total_values)},
        sectors=[
            {
                "sector": sector,
                "organizations": len(members),
                "metrics": nest(sector_values[sector]),
            }
            for sector, members in grouped.items()
        ],
        organizations=organizations,
    )
