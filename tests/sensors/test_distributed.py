"""Acceptance of the distributed mode (issue 6) on the machine's RabbitMQ and PostgreSQL."""

from collections.abc import Callable
from typing import Any

from sqlmodel import Session, select

from cybermission.db import session_scope
from cybermission.findings.models import Finding
from cybermission.inventory.models import Device
from cybermission.scans.models import ScanStatus
from cybermission.sensors.service import create_site_scan
from cybermission.sites.models import Site
from scanners.lab.modbus_devices import LabDeviceKind
from tests.sensors.conftest import Cluster

A_NET = "127.30.1.0/26"
B_NET = "127.31.1.0/26"


def _scan(cluster: Cluster, slug: str, *, chunk: int = 8, **kwargs: Any) -> str:
    with session_scope(cluster.engine) as session:
        run = create_site_scan(
            session, cluster.settings, slug=slug, ports=[502], hosts_per_chunk=chunk, **kwargs
        )
        return run.id


async def test_two_sites_each_sensor_scans_only_its_own_range(
    cluster: Cluster, devices: Callable[..., Any]
) -> None:
    lab_a = await devices("127.30.1.0")
    lab_b = await devices("127.31.1.0", mark="B-")
    a = cluster.site("a", [A_NET])
    b = cluster.site("b", [B_NET])
    _, bundle_a = cluster.enroll(a)
    _, bundle_b = cluster.enroll(b)
    cluster.start_central()
    cluster.start_sensor(a, bundle_a)
    cluster.start_sensor(b, bundle_b)
    run_a = await cluster.wait_run(_scan(cluster, a))
    assert run_a.status is ScanStatus.SUCCEEDED, run_a.errors
    assert all(d.connections for d in lab_a if d.kind is LabDeviceKind.MODBUS)
    assert not any(d.connections or d.requests for d in lab_b)  # B's sensor stayed idle
    seen_a = [len(d.requests) for d in lab_a]
    run_b = await cluster.wait_run(_scan(cluster, b))
    assert run_b.status is ScanStatus.SUCCEEDED, run_b.errors
    assert [len(d.requests) for d in lab_a] == seen_a  # nothing of B's run reached A
    assert all(d.connections for d in lab_b if d.kind is LabDeviceKind.MODBUS)
    with Session(cluster.engine) as session:
        sites = {s.id: s.slug for s in session.exec(select(Site)).all()}
        by_site: dict[str | None, set[str]] = {}
        for device in session.exec(select(Device)).all():
            if device.serial:
                by_site.setdefault(sites.get(device.site_id or ""), set()).add(device.serial)
        finding_sites = {
            sites.get(device.site_id or "")
            for finding in session.exec(select(Finding)).all()
            if (device := session.get(Device, finding.device_id)) is not None
        }
    assert set(by_site) == {a, b}
    assert "21340587" in by_site[a]
    assert by_site[b] == {f"B-{serial}" for serial in by_site[a]}
    assert finding_sites == {a, b}
