"""Runs under device faults: a device that resets every connection, a device gone offline between
scans, a scope that expires mid-run. Each run ends in a stated state within a bounded time, what
it stored of the devices that behaved equals an undisturbed run's, and the next scan and the next
scheduled run work.

Real ``cybermission scan`` and ``serve`` processes, the lab's simulators in processes of their own
(the suite's lab on 127.60.0.x, a second one on 127.61.128.x that a device leaves), a resetting
listener on 127.61.200.1, the real PostgreSQL.
"""

import uuid
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from cybermission.db import session_scope
from cybermission.events import Event, EventKind
from cybermission.findings.models import Finding, FindingStatus
from cybermission.inventory.models import Device as DeviceRow
from cybermission.inventory.models import IPAddress, Service
from cybermission.scans.models import ScanRun, ScanRunHost, ScanStatus
from tests.faults.processes import (
    LAB_TARGETS,
    Store,
    inventory,
    lab_process,
    run_cli,
    scan_json,
    wait_for,
)
from tests.faults.processes import (
    Service as Serve,
)
from tests.faults.test_runs import _finished
from tests.scans.test_device_pacing import PROBED_PORTS
from tests.scans.test_device_pacing import Device as Listener
from tests.timing import scaled

pytestmark = pytest.mark.usefixtures("lab")

RESETTING = "127.61.200.1"
# A second lab, so one of its devices can go offline without disturbing the suite's lab.
SECOND_LAB = "127.61.128.0"
SECOND_TARGETS = "127.61.128.8/29"  # five Modbus devices, .11-.15
LEAVING = "modbus-meter-pm710"


def _scan(store: Store, log: Path, *targets: str, **env: str) -> dict[str, Any]:
    """A CLI scan that must end (bounded) with exit 0; its JSON report."""
    code = run_cli(store, "scan", *targets, "--format", "json", log=log, timeout_s=300, **env)
    assert code == 0, log.read_text()[-3000:]
    return scan_json(log)


def _without(
    view: tuple[set[tuple[str, int, str]], list[tuple[str, ...]]], address: str
) -> tuple[set[tuple[str, int, str]], list[tuple[str, ...]]]:
    """An :func:`inventory` without what it says of ``address``."""
    services, findings = view
    return {s for s in services if s[0] != address}, [f for f in findings if address not in f[2:]]


def _only(
    view: tuple[set[tuple[str, int, str]], list[tuple[str, ...]]], addresses: set[str]
) -> tuple[set[tuple[str, int, str]], list[tuple[str, ...]]]:
    """An :func:`inventory` of ``addresses`` only."""
    services, findings = view
    return (
        {s for s in services if s[0] in addresses},
        [f for f in findings if set(f[2:]) & addresses],
    )


def scheduled_run(
    store: Store, port: int, log: Path, *, cidrs: list[str], targets: list[str]
) -> ScanRun:
    """``serve`` with a schedule of ``targets`` (in a scope of ``cidrs``) run now: the finished
    run, within a bounded time."""
    service = Serve(store, port, log).start()
    try:
        with service.client() as client:
            scope = client.post(
                "/scopes", json={"name": f"sched-{uuid.uuid4().hex[:8]}", "cidrs": cidrs}
            )
            assert scope.status_code == 201, scope.text
            schedule = client.post(
                "/schedules",
                json={
                    "name": f"hourly-{uuid.uuid4().hex[:8]}",
                    "scope_id": scope.json()["id"],
                    "targets": targets,
                    "interval_s": 3600,
                },
            )
            assert schedule.status_code == 201, schedule.text
            decision = client.post(f"/schedules/{schedule.json()['id']}/run")
            assert decision.status_code == 202, decision.text
            assert decision.json()["outcome"] == "started", decision.json()
            run_id = decision.json()["scan_run_id"]
        return wait_for(
            lambda: _finished(store, run_id),
            timeout_s=scaled(180),
            what="the scheduled run to finish",
        )
    finally:
        service.stop()


def _host_sent(store: Store, run_id: str, address: str) -> int:
    """The requests the run's record says it sent to ``address``."""
    with session_scope(store.engine) as session:
        host = session.exec(
            select(ScanRunHost).where(
                ScanRunHost.scan_run_id == run_id, ScanRunHost.address == address
            )
        ).one()
        return sum(sum(requests.values()) for requests in host.sent.values())


def test_resetting_device_is_backed_off_and_named_and_the_rest_equals_an_undisturbed_run(
    pg_store: Store, free_port: int, tmp_path: Path, undisturbed: dict[str, Any]
) -> None:
    strikes = 3
    with Listener(RESETTING, PROBED_PORTS, reset_after_request=True) as device:
        report = _scan(
            pg_store,
            tmp_path / "scan.log",
            LAB_TARGETS,
            RESETTING,
            CYBERMISSION_PACING__STRIKES_BEFORE_BACK_OFF=str(strikes),
        )
    scan = report["scan"]
    assert scan["status"] == "partial", scan["errors"]
    backed_off = [e for e in scan["errors"] if e["stage"] == "back-off"]
    assert [e["target"] for e in backed_off] == [RESETTING]
    assert backed_off[0]["error"].startswith(f"{strikes} strikes")
    assert any(
        e["target"].startswith(RESETTING) and "skipped: backed off" in e["error"]
        for e in scan["errors"]
    )
    # The device saw no more requests than the run says it sent (every one recorded), and the
    # back-off stopped them: fewer than one per probed port and TSAP/try would be without it.
    assert device.requests > 0
    assert device.requests == _host_sent(pg_store, scan["id"], RESETTING)
    # Only the resetting device is named: every other device as an undisturbed run found it.
    assert not [e for e in scan["errors"] if not e["target"].startswith(RESETTING)]
    assert _without(inventory(report), RESETTING) == inventory(undisturbed)

    # The next scan (the device gone back to normal: nothing listens there now) and the next
    # scheduled run work.
    again = _scan(pg_store, tmp_path / "again.log", LAB_TARGETS)
    assert again["scan"]["status"] == "succeeded", again["scan"]["errors"]
    assert inventory(again) == inventory(undisturbed)
    run = scheduled_run(
        pg_store, free_port, tmp_path / "serve.log", cidrs=[LAB_TARGETS], targets=[LAB_TARGETS]
    )
    assert run.status is ScanStatus.SUCCEEDED, (run.reason, run.errors)
    assert (run.hosts_probed, run.open_ports) == (
        undisturbed["scan"]["hosts_probed"],
        undisturbed["scan"]["open_ports"],
    )


def _device_of(store: Store, address: str) -> DeviceRow:
    with session_scope(store.engine) as session:
        ip = session.exec(select(IPAddress).where(IPAddress.address == address)).one()
        device = session.get(DeviceRow, ip.device_id)
        assert device is not None
        return device


def _open_services(store: Store, device_id: str) -> list[int]:
    with session_scope(store.engine) as session:
        return sorted(
            s.port
            for s in session.exec(select(Service).where(Service.device_id == device_id)).all()
            if s.is_open
        )


def _finding_statuses(store: Store, device_id: str) -> dict[str, str]:
    with session_scope(store.engine) as session:
        return {
            f.rule_id: str(f.status)
            for f in session.exec(select(Finding).where(Finding.device_id == device_id)).all()
        }


def test_device_gone_offline_between_scans_is_unreachable_with_its_services_and_findings_closed(
    pg_store: Store, free_port: int, tmp_path: Path
) -> None:
    absent_after = {"CYBERMISSION_ABSENT_AFTER_SCANS": "2"}
    with lab_process(SECOND_LAB, tmp_path / "lab-1.json") as devices:
        address = next(d["address"] for d in devices if d["name"] == LEAVING)
        first = _scan(pg_store, tmp_path / "first.log", SECOND_TARGETS, **absent_after)
    assert first["scan"]["status"] == "succeeded", first["scan"]["errors"]
    leaving = _device_of(pg_store, address)
    assert _open_services(pg_store, leaving.id) == [502]
    before = _finding_statuses(pg_store, leaving.id)
    assert before, "the leaving device had no finding to resolve"
    assert set(before.values()) == {FindingStatus.OPEN}

    # Between scans the device goes offline: the lab comes back without it.
    with lab_process(SECOND_LAB, tmp_path / "lab-2.json", without=(LEAVING,)):
        second = _scan(pg_store, tmp_path / "second.log", SECOND_TARGETS, **absent_after)
        assert second["scan"]["status"] == "succeeded", second["scan"]["errors"]
        once = _device_of(pg_store, address)
        assert (once.absent_scans, once.unreachable_since) == (1, None)
        assert _open_services(pg_store, leaving.id) == [502]  # one absence is not yet gone

        # The second absence is the next scheduled run's: it works, and closes what was seen.
        last = scheduled_run(
            pg_store,
            free_port,
            tmp_path / "serve.log",
            cidrs=[SECOND_TARGETS],
            targets=[SECOND_TARGETS],
        )
        assert last.status is ScanStatus.SUCCEEDED, (last.reason, last.errors)
        gone = _device_of(pg_store, address)
        assert gone.unreachable_since is not None
        assert _open_services(pg_store, leaving.id) == []
        assert _finding_statuses(pg_store, leaving.id) == dict.fromkeys(
            before, str(FindingStatus.RESOLVED)
        )
        with session_scope(pg_store.engine) as session:
            events = session.exec(
                select(Event).where(Event.scan_run_id == last.id, Event.subject_id == leaving.id)
            ).all()
            assert {EventKind.ASSET_UNREACHABLE, EventKind.SERVICE_CLOSED} <= {
                e.kind for e in events
            }

        # The devices that stayed are as the first scan found them, and the next scan works.
        third = _scan(pg_store, tmp_path / "third.log", SECOND_TARGETS, **absent_after)
    assert third["scan"]["status"] == "succeeded", third["scan"]["errors"]
    services, findings = inventory(third)
    assert (services, findings) == _without(inventory(first), address)
    assert _open_services(pg_store, leaving.id) == []
    for other in {s[0] for s in services}:
        stayed = _device_of(pg_store, other)
        assert (stayed.absent_scans, stayed.unreachable_since) == (0, None)


def _listed(ranges: str) -> set[str]:
    """The addresses of a run's ``a-b,c`` list."""
    listed = set()
    for part in ranges.split(","):
        first, _, last = part.partition("-")
        start, end = ip_address(first), ip_address(last or first)
        listed.update(str(start + i) for i in range(int(end) - int(start) + 1))
    return listed


def _finished_hosts(store: Store, run_id: str) -> set[str]:
    with session_scope(store.engine) as session:
        return set(
            session.exec(
                select(col(ScanRunHost.address)).where(ScanRunHost.scan_run_id == run_id)
            ).all()
        )


# The scope lapses LAPSE_S after it is added; the scan is paced so that it cannot end before
# twice that (64 addresses, 4 at a time, 26 ports each at PER_HOST_RATE_PER_S), while its first
# lab devices (.11 on) are done in a fifth of it. Both derive from the one timeout factor.
LAPSE_S = scaled(15)
PER_HOST_RATE_PER_S = 16 * 26 / (2 * LAPSE_S)


def test_scope_expiring_mid_run_ends_partial_listing_what_it_skipped(
    pg_store: Store, free_port: int, tmp_path: Path, undisturbed: dict[str, Any]
) -> None:
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LAPSE_S)
    log = tmp_path / "scope.log"
    stamp = until.strftime("%Y-%m-%dT%H:%M:%S")
    code = run_cli(
        pg_store, "scopes", "add", "lapsing", LAB_TARGETS, "--valid-until", stamp, log=log
    )
    assert code == 0, log.read_text()
    log = tmp_path / "scan.log"
    code = run_cli(
        pg_store,
        "scan",
        LAB_TARGETS,
        "--format",
        "json",
        log=log,
        timeout_s=300,  # bounded: never a hang
        CYBERMISSION_PACING__PER_HOST_RATE_PER_S=str(PER_HOST_RATE_PER_S),
    )
    assert code == 0, log.read_text()[-3000:]
    report = scan_json(log)
    scan = report["scan"]
    assert scan["status"] == "partial", scan["errors"]
    [skipped] = [e for e in scan["errors"] if e["stage"] == "scope"]
    listed = _listed(skipped["target"])
    assert skipped["error"] == f"skipped {len(listed)} addresses: no authorised scope is valid now"
    assert listed, "nothing was skipped: the scope did not lapse mid-run"
    assert scan["hosts_probed"] > 0, "no device was probed: the scope lapsed before the run began"
    # Every device the undisturbed run found is either finished (stored) or listed, never both:
    # none is silently dropped; and no other error.
    done = _finished_hosts(pg_store, scan["id"])
    devices = {service[0] for service in inventory(undisturbed)[0]}
    assert done.isdisjoint(listed)
    assert devices <= done | listed
    assert [e for e in scan["errors"] if e["stage"] != "scope"] == []
    # What it stored of the addresses it did scan equals the undisturbed run's; of the others,
    # nothing (no packet went out after the lapse).
    assert inventory(report) == _only(inventory(undisturbed), done)

    # The scope renewed, the next scan and the next scheduled run work as undisturbed.
    log = tmp_path / "renew.log"
    assert run_cli(pg_store, "scopes", "add", "renewed", LAB_TARGETS, log=log) == 0, log.read_text()
    again = _scan(pg_store, tmp_path / "again.log", LAB_TARGETS)
    assert again["scan"]["status"] == "succeeded", again["scan"]["errors"]
    assert inventory(again) == inventory(undisturbed)
    run = scheduled_run(
        pg_store, free_port, tmp_path / "serve.log", cidrs=[LAB_TARGETS], targets=[LAB_TARGETS]
    )
    assert run.status is ScanStatus.SUCCEEDED, (run.reason, run.errors)
    assert run.hosts_probed == undisturbed["scan"]["hosts_probed"]
