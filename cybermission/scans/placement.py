"""Placement: the site and zone (with its exposure) where a scope puts the devices it covers."""

from collections.abc import Mapping
from dataclasses import dataclass

from sqlmodel import Session, select

from cybermission.guard import ScopeGuard
from cybermission.inventory.models import Device
from cybermission.sites.models import Site, Zone


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a scope puts the devices it covers: its site, zone and the zone's exposure."""

    organization_id: str | None
    site_id: str | None
    site: str | None
    zone_id: str | None
    zone: str | None
    exposure: str | None


def load_placements(session: Session) -> dict[str, Placement]:
    """Placement per zone id and per site id (scopes may name a site without a zone)."""
    sites = {s.id: s for s in session.exec(select(Site)).all()}
    placements: dict[str, Placement] = {
        site.id: Placement(site.organization_id, site.id, site.slug, None, None, None)
        for site in sites.values()
    }
    for zone in session.exec(select(Zone)).all():
        site = sites.get(zone.site_id)
        placements[zone.id] = Placement(
            site.organization_id if site else None,
            zone.site_id,
            site.slug if site else None,
            zone.id,
            zone.name,
            str(zone.exposure),
        )
    return placements


def place_device(
    device: Device, address: str, *, guard: ScopeGuard, placements: Mapping[str, Placement]
) -> Placement | None:
    """Put the device in the site and zone of the most specific scope covering its address."""
    rule = guard.rule_for(address)
    if rule is None:
        return None
    placement = placements.get(rule.zone_id or "") or placements.get(rule.site_id or "")
    if placement is None:
        return None
    device.organization_id = placement.organization_id
    device.site_id = placement.site_id
    device.zone_id = placement.zone_id
    return placement
