"""Reads of one device's addresses, services and history (the API and the scan report).

Writes are elsewhere: identity resolution in ``identity.py``, reconciliation of a scan's hosts in
``batch.py``, absence in ``absence.py``.
"""

from sqlmodel import Session, col, select

from cybermission.inventory.models import ChangeEvent, IPAddress, Service


def device_addresses(session: Session, device_id: str) -> list[str]:
    rows = session.exec(select(IPAddress).where(IPAddress.device_id == device_id)).all()
    return sorted(r.address for r in rows)


def device_services(session: Session, device_id: str) -> list[Service]:
    query = select(Service).where(Service.device_id == device_id).order_by(col(Service.port))
    return list(session.exec(query).all())


def device_events(session: Session, device_id: str, *, limit: int = 50) -> list[ChangeEvent]:
    query = (
        select(ChangeEvent)
        .where(ChangeEvent.device_id == device_id)
        .order_by(col(ChangeEvent.at).desc())
        .limit(limit)
    )
    return list(session.exec(query).all())
