"""The run report: the JSON contract of ``cybermission scan --format json`` (README)."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from cybermission.errors import CybermissionError
from cybermission.findings.models import Finding
from cybermission.inventory.models import Device, IPAddress, Service
from cybermission.scans.models import ObservationRecord, ScanRun

REPORT_CHUNK = 500


def build_scan_report(session: Session, scan_run_id: str) -> dict[str, Any]:
    """The JSON contract of ``cybermission scan --format json`` (README): run, assets, findings.

    The assets are the devices at the run's addresses that the run saw (last seen since it
    started): the same address in another organisation, or a device that left the address, is
    not this run's. Each kind of row is read in one query per chunk, never one per device.
    """
    run = session.get(ScanRun, scan_run_id)
    if run is None:
        raise CybermissionError(f"no scan run with id {scan_run_id!r}")
    addresses = set(
        session.exec(
            select(ObservationRecord.address)
            .where(ObservationRecord.scan_run_id == scan_run_id)
            .distinct()
        ).all()
    )
    device_ids: set[str] = set()
    for chunk in _chunks(addresses):
        device_ids.update(
            session.exec(select(IPAddress.device_id).where(col(IPAddress.address).in_(chunk))).all()
        )
    devices: list[Device] = []
    for chunk in _chunks(device_ids):
        query = select(Device).where(col(Device.id).in_(chunk), col(Device.parent_id).is_(None))
        if run.started_at is not None:
            query = query.where(col(Device.last_seen_at) >= run.started_at)
        devices.extend(session.exec(query).all())
    devices.sort(key=lambda d: d.id)
    rows = _DeviceRows.load(session, [d.id for d in devices])
    assets = [_asset_json(device, rows) for device in devices]
    findings = session.exec(
        select(Finding)
        .where(Finding.last_scan_run_id == scan_run_id)
        .order_by(col(Finding.score).desc())
    ).all()
    return {
        "scan": {
            "id": run.id,
            "status": str(run.status),
            "targets": run.targets,
            "ports": run.ports,
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "hosts_total": run.hosts_total,
            "hosts_probed": run.hosts_probed,
            "open_ports": run.open_ports,
            "errors": run.errors,
            "sent": run.sent,
        },
        "assets": assets,
        "findings": [
            {
                "id": f.id,
                "rule_id": f.rule_id,
                "severity": str(f.severity),
                "score": f.score,
                "asset_id": f.device_id,
                "port": f.port,
                "title": f.title,
                "status": str(f.status),
            }
            for f in findings
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), REPORT_CHUNK):
        yield items[start : start + REPORT_CHUNK]


@dataclass(slots=True)
class _DeviceRows:
    """Addresses, services and units of the report's devices, grouped by device id."""

    addresses: dict[str, list[str]] = field(default_factory=dict)
    services: dict[str, list[Service]] = field(default_factory=dict)
    units: dict[str, list[Device]] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, device_ids: Sequence[str]) -> "_DeviceRows":
        rows = cls()
        for chunk in _chunks(device_ids):
            for device_id, address in session.exec(
                select(IPAddress.device_id, IPAddress.address).where(
                    col(IPAddress.device_id).in_(chunk)
                )
            ):
                rows.addresses.setdefault(device_id, []).append(address)
            for service in session.exec(select(Service).where(col(Service.device_id).in_(chunk))):
                rows.services.setdefault(service.device_id, []).append(service)
            for unit in session.exec(select(Device).where(col(Device.parent_id).in_(chunk))):
                rows.units.setdefault(unit.parent_id or "", []).append(unit)
        return rows


def _asset_json(device: Device, rows: _DeviceRows) -> dict[str, Any]:
    services = sorted(rows.services.get(device.id, []), key=lambda s: (s.port, s.transport, s.id))
    children = sorted(rows.units.get(device.id, []), key=lambda c: (c.unit_id or 0, c.id))
    return {
        "id": device.id,
        "addresses": sorted(rows.addresses.get(device.id, [])),
        "vendor": device.vendor,
        "product": device.product,
        "model": device.model,
        "firmware": device.firmware,
        "serial": device.serial,
        "device_type": device.model or device.product,
        "services": [
            {
                "port": s.port,
                "transport": s.transport,
                "protocol": s.protocol,
                "open": s.is_open,
                "facts": s.facts,
            }
            for s in services
        ],
        "units": [
            {
                "id": c.id,
                "unit_id": c.unit_id,
                "vendor": c.vendor,
                "product": c.product,
                "model": c.model,
                "firmware": c.firmware,
                "serial": c.serial,
            }
            for c in children
        ],
    }
