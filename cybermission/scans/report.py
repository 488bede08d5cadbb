"""The run report: the JSON contract of ``cybermission scan --format json`` (README)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from cybermission.errors import CybermissionError
from cybermission.findings.models import Finding
from cybermission.inventory.models import Device, IPAddress
from cybermission.inventory.service import device_addresses, device_services
from cybermission.scans.models import ObservationRecord, ScanRun


def build_scan_report(session: Session, scan_run_id: str) -> dict[str, Any]:
    """The JSON contract of ``cybermission scan --format json`` (README): run, assets, findings."""
    run = session.get(ScanRun, scan_run_id)
    if run is None:
        raise CybermissionError(f"no scan run with id {scan_run_id!r}")
    addresses = {
        r.address
        for r in session.exec(
            select(ObservationRecord).where(ObservationRecord.scan_run_id == scan_run_id)
        ).all()
    }
    device_ids = (
        sorted(
            {
                ip.device_id
                for ip in session.exec(
                    select(IPAddress).where(col(IPAddress.address).in_(addresses))
                ).all()
            }
        )
        if addresses
        else []
    )
    assets = []
    for device_id in device_ids:
        device = session.get(Device, device_id)
        if device is None:
            continue
        children = session.exec(select(Device).where(Device.parent_id == device_id)).all()
        assets.append(_asset_json(session, device, children))
    findings = session.exec(
        select(Finding)
        .where(Finding.last_scan_run_id == scan_run_id)
        .order_by(col(Finding.score).desc())
    ).all()
    return {
        "scan": {
            "id": run.id,
            "status": str(run.status),
            "reason": run.reason,
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


def _asset_json(session: Session, device: Device, children: Sequence[Device]) -> dict[str, Any]:
    return {
        "id": device.id,
        "addresses": device_addresses(session, device.id),
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
            for s in device_services(session, device.id)
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
