"""``cybermission assets list|show|criticality``: the inventory as the API serves it.

``list`` pages through devices (oldest first) with the API's filters; ``show ID`` prints one device
with its addresses, services (facts and transport), units and recent changes. Both take
``--format table|json|jsonl`` (``cybermission/cli/output.py``).

``criticality ID LEVEL``: how much a device matters, set by a person. The level weighs the score
of the device's findings from the next scan on (rules/README.md, Score); rescans never overwrite
it. ``none`` clears it. Exit status: 0 set; 1 not a level; 2 no such device, or the store cannot
be reached.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cybermission.cli.output import FormatOption, check_format, write_document, write_rows
from cybermission.cli.runtime import command_group, fail, open_store, out, start
from cybermission.errors import CybermissionError, ValidationError

if TYPE_CHECKING:
    from sqlmodel import Session

    from cybermission.inventory.models import Device, Service

app = command_group("Assets of the inventory.")

LIST_COLUMNS = (
    "id",
    "name",
    "addresses",
    "vendor",
    "model",
    "firmware",
    "protocols",
    "criticality",
    "last_seen_at",
)


def _device_row(device: Device, addresses: list[str], services: list[Service]) -> dict[str, Any]:
    """A device as the CLI lists it: its asset document (``inventory/documents.py``) but the
    organisation, with its addresses and the protocols it answers."""
    from cybermission.inventory.documents import ASSET_FIELDS, asset_fields

    return {
        **asset_fields(device, [f for f in ASSET_FIELDS if f != "organization_id"]),
        "addresses": addresses,
        "protocols": sorted({f"{s.protocol}/{s.port}/{s.transport}" for s in services}),
    }


def _site_id(session: Session, site: str | None) -> str | None:
    """A site named by slug (as ``sites add`` made it) or by id."""
    from cybermission.sites.service import get_site_or_raise, list_sites

    if site is None:
        return None
    if any(s.id == site for s in list_sites(session)):
        return site
    return get_site_or_raise(session, slug=site).id


@app.command("list")
def assets_list(
    site: Annotated[str | None, typer.Option(help="Only this site (slug or id).")] = None,
    zone_id: Annotated[str | None, typer.Option(help="Only this zone's id.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Only devices with this protocol.")] = None,
    vendor: Annotated[str | None, typer.Option(help="Only this vendor (exact).")] = None,
    criticality: Annotated[
        str | None, typer.Option(help="Only this criticality (low ... critical).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many devices.")] = 1000,
    output: FormatOption = "table",
) -> None:
    """Devices of the inventory, oldest first, filtered."""
    from cybermission.db import session_scope
    from cybermission.inventory.models import Criticality
    from cybermission.inventory.queries import (
        list_addresses_by_device,
        list_devices,
        list_services_by_device,
    )

    check_format(output)
    try:
        level = Criticality(criticality) if criticality else None
    except ValueError as exc:
        raise typer.BadParameter(
            f"use {', '.join(c.value for c in Criticality)}", param_hint="--criticality"
        ) from exc
    rows: list[dict[str, Any]] = []
    try:
        with session_scope(open_store(start())) as session:
            site_id = _site_id(session, site)
            cursor: str | None = None
            while len(rows) < limit:
                devices, cursor = list_devices(
                    session=session,
                    visible_to=None,
                    site_id=site_id,
                    zone_id=zone_id,
                    vendor=vendor,
                    criticality=level,
                    protocol=protocol,
                    cursor=cursor,
                    limit=min(500, limit - len(rows)),
                )
                ids = [d.id for d in devices]
                addresses = list_addresses_by_device(session=session, device_ids=ids)
                services = list_services_by_device(session=session, device_ids=ids)
                rows.extend(_device_row(d, addresses[d.id], services[d.id]) for d in devices)
                if cursor is None:
                    break
    except CybermissionError as exc:
        raise fail(exc) from exc
    write_rows(rows, output, columns=LIST_COLUMNS, no_wrap=("id",))


@app.command("show")
def assets_show(
    device_id: Annotated[str, typer.Argument(metavar="ID", help="The device's id.")],
    output: FormatOption = "table",
) -> None:
    """One device: identity, addresses, services with their facts, units, recent changes."""
    from cybermission.db import session_scope
    from cybermission.inventory.documents import asset_fields, service_fields
    from cybermission.inventory.queries import (
        get_device_or_raise,
        list_addresses_by_device,
        list_services_by_device,
        list_units_by_gateway,
    )
    from cybermission.inventory.service import device_events

    check_format(output)
    try:
        with session_scope(open_store(start())) as session:
            device = get_device_or_raise(session=session, device_id=device_id, visible_to=None)
            services = list_services_by_device(session=session, device_ids=[device.id])[device.id]
            addresses = list_addresses_by_device(session=session, device_ids=[device.id])
            units = list_units_by_gateway(session=session, gateway_ids=[device.id])[device.id]
            document = {
                **_device_row(device, addresses[device.id], services),
                "provenance": device.provenance,
                "services": [service_fields(s) for s in services],
                "units": [asset_fields(u, ("id", "unit_id", "vendor", "model")) for u in units],
                "recent_changes": [
                    {
                        "at": c.at,
                        "kind": str(c.kind),
                        "field": c.field,
                        "old": c.old_value,
                        "new": c.new_value,
                    }
                    for c in device_events(session, device.id, limit=20)
                ],
            }
    except CybermissionError as exc:
        raise fail(exc) from exc
    if output != "table":
        write_document(document, output)
        return
    for key in ("id", *LIST_COLUMNS[1:6], "product", "serial", "criticality", "last_seen_at"):
        out().print(f"{key:>13}: {document[key] or ''}", highlight=False, markup=False)
    write_rows(
        document["services"],
        "table",
        columns=("address", "port", "transport", "protocol", "open", "facts"),
        title="services",
    )
    if document["units"]:
        write_rows(document["units"], "table", title="units")
    if document["recent_changes"]:
        write_rows(document["recent_changes"], "table", title="recent changes")


@app.command("criticality")
def criticality_command(
    device_id: Annotated[str, typer.Argument(metavar="ID", help="The device's id.")],
    level: Annotated[str, typer.Argument(help="low, medium, high, critical, or none to clear.")],
) -> None:
    """Set how much a device matters (kept across rescans)."""
    from cybermission.db import session_scope
    from cybermission.inventory.criticality import set_criticality

    engine = open_store(start())
    try:
        with session_scope(engine) as session:
            device = set_criticality(
                session,
                device_id=device_id,
                criticality=None if level.strip().casefold() == "none" else level.strip(),
            )
            result = {
                "id": device.id,
                "criticality": device.criticality.value if device.criticality else None,
            }
    except ValidationError as exc:
        raise fail(exc, code=1) from exc
    except CybermissionError as exc:
        raise fail(exc) from exc
    sys.stdout.write(json.dumps(result) + "\n")
