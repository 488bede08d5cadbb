"""Advisories imported after the scans: the whole inventory matched again, incrementally.

Only the advisories an import created or updated (or whose KEV flag changed) are indexed, and every
device that names a vendor is matched against them: a new match is a new finding with a
``finding.created`` event (alerts, webhooks, CEF), a match already stored is refreshed (its KEV
flag, CVSS and score), a resolved one that matches again reopens. The device's identity is what the
store keeps of it (vendor, firmware, product, model, product code and the naming facts of its
stored services), read in ``scans/naming.py`` exactly as a scan reads it: a finding a re-match
raises, the next scan keeps.
"""

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlmodel import Session, col, select

from cybermission.db import in_chunks
from cybermission.findings.advisories.drafts import advisory_drafts
from cybermission.findings.advisories.families import FamilyBook
from cybermission.findings.advisories.family_packs import organization_book
from cybermission.findings.advisories.matching import AdvisoryIndex
from cybermission.findings.models import Advisory, AdvisoryProduct
from cybermission.findings.service import FindingDraft, record_findings
from cybermission.inventory.models import Device
from cybermission.inventory.queries import list_addresses_by_device
from cybermission.scans.naming import load_advisory_identities
from cybermission.scans.placed_findings import finding_places
from cybermission.scans.placement import Placement, load_placements

_PAGE: Final = 1000


@dataclass(slots=True)
class RematchReport:
    advisories: int = 0
    devices: int = 0
    created: int = 0
    updated: int = 0
    reopened: int = 0


@dataclass(slots=True)
class _Indexes:
    """The changed advisories indexed once per family book: each device is matched with the
    family data its organisation chose (advisories/family_packs.py)."""

    advisories: list[Advisory]
    products: list[AdvisoryProduct]
    by_book: dict[int, tuple[FamilyBook, AdvisoryIndex]] = field(default_factory=dict)
    by_organization: dict[str | None, AdvisoryIndex] = field(default_factory=dict)

    def of(self, session: Session, organization_id: str | None) -> AdvisoryIndex:
        found = self.by_organization.get(organization_id)
        if found is not None:
            return found
        book = organization_book(session, organization_id=organization_id)
        held = self.by_book.get(id(book))
        if held is None or held[0] is not book:
            held = (book, AdvisoryIndex.build(self.advisories, self.products, book=book))
            self.by_book[id(book)] = held
        self.by_organization[organization_id] = held[1]
        return held[1]


def _indexes(session: Session, advisory_ids: Sequence[str]) -> _Indexes:
    advisories: list[Advisory] = []
    products: list[AdvisoryProduct] = []
    for chunk in in_chunks(advisory_ids):
        advisories += session.exec(select(Advisory).where(col(Advisory.id).in_(chunk))).all()
        products += session.exec(
            select(AdvisoryProduct).where(col(AdvisoryProduct.advisory_id).in_(chunk))
        ).all()
    return _Indexes(advisories, products)


def _devices(session: Session) -> Iterator[list[Device]]:
    """Devices that name a vendor, a page at a time by id."""
    after = ""
    while True:
        rows = session.exec(
            select(Device)
            .where(col(Device.vendor).is_not(None), col(Device.id) > after)
            .order_by(col(Device.id))
            .limit(_PAGE)
        ).all()
        if not rows:
            return
        yield list(rows)
        after = rows[-1].id


def _placement(device: Device, placements: dict[str, Placement]) -> Placement | None:
    return placements.get(device.zone_id or "") or placements.get(device.site_id or "")


def rematch_inventory(
    session: Session, *, advisory_ids: Collection[str], now: datetime
) -> RematchReport:
    """Match every device against ``advisory_ids`` in the caller's transaction (see module)."""
    report = RematchReport()
    ids = sorted(set(advisory_ids))
    if not ids:
        return report
    indexes = _indexes(session, ids)
    report.advisories = len(indexes.advisories)
    placements = load_placements(session)
    for page in _devices(session):
        # A gateway's unit has no address of its own: its findings name the gateway's, as the
        # scan that found it does.
        parents = {d.parent_id for d in page if d.parent_id}
        addresses = list_addresses_by_device(
            session=session, device_ids=[*(d.id for d in page), *parents]
        )
        identities = load_advisory_identities(session, page)
        drafts: list[FindingDraft] = []
        for device in page:
            report.devices += 1
            identity = identities.get(device.id)
            if identity is None:
                continue
            placement = _placement(device, placements)
            held = addresses.get(device.id) or addresses.get(device.parent_id or "") or []
            drafts += advisory_drafts(
                indexes.of(session, device.organization_id).match(identity),
                device_id=device.id,
                zone_exposure=placement.exposure if placement else None,
                criticality=str(device.criticality) if device.criticality else None,
                address=held[0] if held else None,
            )
        # The findings service writes each created or reopened finding's event.
        recorded = record_findings(
            session,
            scan_run_id=None,
            drafts=drafts,
            now=now,
            place_of=finding_places(session=session),
        )
        report.created += len(recorded.created)
        report.updated += len(recorded.updated)
        report.reopened += len(recorded.reopened)
    return report
