"""The names an advisory is matched against for a device: one home for every path that matches.

A scan judging the devices it wrote (and a site sensor's reports, stored through the same path)
and the re-match of the inventory after ``advisories import`` or ``kev`` both read a device's
identity here, from what the store keeps of it: its vendor, firmware, product and model, its
device type's product code, and the naming facts of every service stored for it. Two readings
made the same device match in one and not in the other: the scan read the facts of the ports it
had just probed, the re-match only the device's attributes, so a device named by its order number
gained an advisory finding from a scan, never from a re-match, and a scan of its other ports
resolved it (issue 12).

Every service counts, a closed one too: a port that stopped answering says nothing new about
what the device is, as its product and model stay when it does; a finding people act on is not
lost because a port was not probed this time.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from sqlmodel import Session, col, select

from cybermission.db import in_chunks
from cybermission.findings.advisories.matching import DeviceIdentity
from cybermission.inventory.models import Device, DeviceType, Service

# Facts that name a device beside its inventory attributes.
NAMING_FACTS: Final = ("product_code", "order_number", "product_name", "model", "product")


def advisory_identity(
    device: Device, *, product_code: str | None, facts: Iterable[Mapping[str, Any]]
) -> DeviceIdentity | None:
    """``device`` as the advisories see it, with its device type's ``product_code`` and the
    ``facts`` of its services; None when it names no vendor or nothing names it (nothing to
    match)."""
    if not device.vendor:
        return None
    names: list[str | None] = [device.product, device.model, product_code]
    for service_facts in facts:
        names.extend(
            value for key in NAMING_FACTS if isinstance(value := service_facts.get(key), str)
        )
    kept = tuple(dict.fromkeys(n for n in names if n and n.strip()))
    # Without a name the matcher finds nothing (it looks advisories up by name).
    return (
        DeviceIdentity(vendor=device.vendor, firmware=device.firmware, names=kept) if kept else None
    )


def load_advisory_identities(
    session: Session, devices: Sequence[Device]
) -> dict[str, DeviceIdentity]:
    """The identity of each device in ``devices`` that names a vendor, by device id, from the
    store (see module): two queries per 500 devices. Call it once the devices' services are
    flushed."""
    named = [d for d in devices if d.vendor]
    if not named:
        return {}
    type_ids = sorted({d.device_type_id for d in named if d.device_type_id})
    codes: dict[str, str | None] = {}
    for chunk in in_chunks(type_ids):
        codes.update(
            session.exec(
                select(DeviceType.id, DeviceType.product_code).where(col(DeviceType.id).in_(chunk))
            ).all()
        )
    facts: dict[str, list[Mapping[str, Any]]] = {}
    for chunk in in_chunks(d.id for d in named):
        rows = session.exec(
            select(Service.device_id, Service.facts)
            .where(col(Service.device_id).in_(chunk))
            # The same names in the same order whichever path reads them.
            .order_by(
                col(Service.device_id),
                col(Service.port),
                col(Service.transport),
                col(Service.protocol),
            )
        ).all()
        for device_id, service_facts in rows:
            if isinstance(service_facts, Mapping):
                facts.setdefault(device_id, []).append(service_facts)
    identities: dict[str, DeviceIdentity] = {}
    for device in named:
        identity = advisory_identity(
            device,
            product_code=codes.get(device.device_type_id or ""),
            facts=facts.get(device.id, ()),
        )
        if identity is not None:
            identities[device.id] = identity
    return identities
