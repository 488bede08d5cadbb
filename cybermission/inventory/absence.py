"""Absence: devices that complete scans of their scope no longer see become unreachable.

Issue 10: a device that goes offline must not keep its services and findings open for ever, and
one missed answer must not declare it gone either. At the end of a run that looked at an address
completely (the run finished, nothing about that address failed or was skipped), every device of
that address's organisation there that the run did not see counts one absence; after
``absent_after_scans`` in a row it is marked unreachable, its open services on the ports the run
scanned are closed, and change events say so. A device answering again resets its count and says
it is back (``batch.py``). A device with an address outside the run is never counted: it may
answer there.
"""

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from cybermission.db import in_chunks, insert_rows
from cybermission.inventory.identity import in_organization
from cybermission.inventory.models import ChangeEvent, ChangeKind, Device, IPAddress, Service

# (address, organisation) -> the run looked at that address completely for that organisation.
Coverage = Callable[[str, str | None], bool]


@dataclass(slots=True)
class Absences:
    """What one run's absences changed."""

    missed: list[Device] = field(default_factory=list)  # counted one more absence
    unreachable: list[Device] = field(default_factory=list)  # reached the threshold now
    closed: list[tuple[Device, Service]] = field(default_factory=list)
    events: list[ChangeEvent] = field(default_factory=list)


def _covered_devices(
    session: Session, organizations: Collection[str | None], covered: Coverage
) -> set[str]:
    """Devices whose every address the run looked at completely."""
    fully: set[str] = set()
    for organization_id in organizations:
        addresses: dict[str, list[str]] = {}
        rows = session.exec(
            select(IPAddress.device_id, IPAddress.address).where(
                in_organization(IPAddress.organization_id, organization_id)
            )
        )
        for device_id, address in rows:
            addresses.setdefault(device_id, []).append(address)
        fully.update(
            device_id
            for device_id, known in addresses.items()
            if all(covered(a, organization_id) for a in known)
        )
    return fully


def record_absences(
    session: Session,
    *,
    organizations: Collection[str | None],
    covered: Coverage,
    seen_since: datetime,
    scanned: Collection[tuple[int, str]],
    absent_after_scans: int,
    scan_run_id: str | None,
    now: datetime,
) -> Absences:
    """Count one absence for every device of ``organizations`` that the run covered and did not
    see (``last_seen_at`` before ``seen_since``, the run's start); mark unreachable those that
    reached ``absent_after_scans``. Call it once per run, after its last batch was written."""
    threshold = max(1, absent_after_scans)
    ports = set(scanned)
    result = Absences()
    candidates = _covered_devices(session, organizations, covered)
    for chunk in in_chunks(candidates):
        missed = session.exec(
            select(Device).where(
                col(Device.id).in_(chunk),
                col(Device.parent_id).is_(None),
                col(Device.last_seen_at) < seen_since,
            )
        ).all()
        gone: dict[str, Device] = {}
        for device in missed:
            device.absent_scans += 1
            result.missed.append(device)
            if device.absent_scans >= threshold and device.unreachable_since is None:
                device.unreachable_since = now
                gone[device.id] = device
                result.unreachable.append(device)
                result.events.append(
                    ChangeEvent(
                        device_id=device.id,
                        scan_run_id=scan_run_id,
                        kind=ChangeKind.DEVICE_GONE,
                        at=now,
                    )
                )
        if not gone:
            continue
        services = session.exec(
            select(Service).where(col(Service.device_id).in_(list(gone)), col(Service.is_open))
        ).all()
        for service in services:
            if (service.port, service.transport) not in ports:
                continue  # not looked at: it may still be open
            service.is_open = False
            device = gone[service.device_id]
            result.closed.append((device, service))
            result.events.append(
                ChangeEvent(
                    device_id=device.id,
                    scan_run_id=scan_run_id,
                    kind=ChangeKind.SERVICE_CLOSED,
                    field="service",
                    new_value=f"{service.port}/{service.protocol}",
                    at=now,
                )
            )
    insert_rows(session, result.events)
    session.flush()
    return result
