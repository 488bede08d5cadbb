"""Issue 14's done-when, end to end in headless Chromium against real parts: real Modbus/TCP
simulators (pymodbus, the lab's devices) on loopback, scanned by the service through its API,
real CISA advisories (CSAF from ../shared) imported first. An analyst finds a device by its
model, opens it, reads its history (a firmware change between two scans) and the advisories
with their CVEs, triages two findings, and sees the site's trend chart change after a rescan
that finds one more device."""

import asyncio
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session

from api.app import create_app
from cybermission.auth.models import Role
from cybermission.auth.service import create_token
from cybermission.config import PacingProfile, PacingSettings, Settings
from cybermission.db import utcnow
from cybermission.findings.advisories.store import import_advisories
from cybermission.scans.models import Scope
from cybermission.sites.models import Organization, Site
from scanners.lab.modbus_devices import ANY_UNIT, OBJECT_NAMES, LabDevice
from tests.api.browser import served
from tests.api.console.conftest import HOST, Shoot, SignIn, follow
from tests.api.console.plant import Plant
from tests.conftest import shared_data
from tests.timing import scaled

NETWORK = "127.40.30.0/24"
PLC, RTU = "127.40.30.11", "127.40.30.13"
# Real CISA advisories naming the Modicon M340 (BMX P34) CPUs.
ADVISORIES = ("2020/icsa-20-016-01.json", "2021/icsa-21-005-01.json")


def _modbus(name: str, address: str, identity: dict[str, str]) -> LabDevice:
    objects = {OBJECT_NAMES[k]: v for k, v in identity.items()}
    return LabDevice(
        name=name,
        address=address,
        port=502,
        protocol="modbus",
        identity=dict(identity),
        units={ANY_UNIT: objects},
    )


def _m340(revision: str) -> LabDevice:
    return _modbus(
        "m340",
        PLC,
        {
            "vendor": "Schneider Electric",
            "product_code": "BMX P34 2020",
            "revision": revision,
            "product_name": "Modicon M340",
            "model": "BMX P34 2020",
        },
    )


class Simulators:
    """Lab devices served by their own event loop in a thread (the test itself is synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running: list[LabDevice] = []

    def start(self, device: LabDevice) -> None:
        asyncio.run_coroutine_threadsafe(device.start(), self.loop).result(scaled(10))
        self.running.append(device)

    def stop(self, device: LabDevice) -> None:
        asyncio.run_coroutine_threadsafe(device.stop(), self.loop).result(scaled(10))
        self.running.remove(device)

    def close(self) -> None:
        for device in list(self.running):
            self.stop(device)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(scaled(10))
        self.loop.close()


@pytest.fixture
def simulators() -> Iterator[Simulators]:
    sims = Simulators()
    yield sims
    sims.close()


@pytest.fixture
def plant(engine: Engine, tmp_path: Path) -> Plant:
    """A water organisation with one site whose scope covers the simulators, an operator (who
    scans) and an analyst (who triages), and the real advisories imported."""
    archive = shared_data("advisories", "cisa-csaf-ot-2017-2024.tar.xz")
    folder = tmp_path / "advisories"
    with tarfile.open(archive) as tar:
        for member in ADVISORIES:
            tar.extract(member, folder, filter="data")
    plant = Plant()
    with Session(engine, expire_on_commit=False) as session:
        report = import_advisories(session, folder, now=utcnow())
        assert len(report.changed) == len(ADVISORIES)
        org = Organization(slug="water", name="Water")
        session.add(org)
        session.flush()
        north = Site(organization_id=org.id, slug="north", name="Water Works North")
        session.add(north)
        session.flush()
        session.add(Scope(name="north", cidrs=[NETWORK], site_id=north.id, organization_id=org.id))
        plant.org, plant.north = org.id, north.id
        for role in (Role.ANALYST, Role.OPERATOR):
            issued = create_token(session, name=f"{role}-water", role=role, organization_id=org.id)
            plant.tokens[str(role)] = issued.secret
        session.commit()
    return plant


@pytest.fixture
def server(engine: Engine, api_settings: Settings, plant: Plant) -> Iterator[str]:
    # The lab's pacing, with timeouts a loaded machine can keep; UDP is not what this is about.
    pacing = PacingSettings(
        profile=PacingProfile.LAB, connect_timeout_s=scaled(2.0), probe_timeout_s=scaled(3.0)
    )
    settings = api_settings.model_copy(update={"pacing": pacing, "udp_ports": []})
    with served(create_app(settings, engine=engine), HOST) as url:
        yield url


def _scan(server: str, plant: Plant) -> str:
    """A scan of the simulators' addresses through the API, as the operator; its id."""
    response = httpx.post(
        f"{server}/api/v1/scans",
        json={"targets": [PLC, RTU], "ports": [502]},
        headers={"Authorization": f"Bearer {plant.tokens['operator']}"},
        timeout=scaled(10),
    )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def _wait(server: str, plant: Plant, run_id: str) -> dict[str, object]:
    deadline = time.monotonic() + scaled(60)  # against hanging, not a speed assertion
    while True:
        run: dict[str, object] = httpx.get(
            f"{server}/api/v1/scans/{run_id}",
            headers={"Authorization": f"Bearer {plant.tokens['operator']}"},
            timeout=scaled(10),  # httpx's 5 s default: the scan shares the loaded server
        ).json()
        if run["finished_at"] is not None:
            assert run["status"] == "succeeded", run
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.2)


def test_analyst_finds_reads_triages_and_sees_the_trend_move_after_a_rescan(
    server: str,
    page: Page,
    sign_in: SignIn,
    plant: Plant,
    simulators: Simulators,
    shoot: Shoot,
) -> None:
    # Two scans of the PLC, its firmware upgraded in between: a history to read.
    old = _m340("v2.4")
    simulators.start(old)
    _wait(server, plant, _scan(server, plant))
    simulators.stop(old)
    simulators.start(_m340("v2.5"))
    _wait(server, plant, _scan(server, plant))

    sign_in()
    # Find the device by its model, and open it.
    page.goto(f"{server}/console/assets")
    page.fill("#search", "BMX P34")
    follow(page, "#search", key="Enter")
    rows = page.locator("#assets tbody tr[data-id]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(PLC)
    expect(rows.first).to_contain_text("v2.5")
    shoot("assets")
    follow(page, "#assets tbody tr[data-id] a")
    expect(page.locator("#device-title")).to_contain_text("BMX P34 2020")
    # Its history: first seen, then the firmware change the second scan saw.
    change = page.locator("#history tr[data-kind='attribute-changed']")
    expect(change).to_contain_text("firmware")
    expect(change).to_contain_text("v2.4")
    expect(change).to_contain_text("v2.5")
    expect(page.locator("#history tr[data-kind='device-new']")).to_have_count(1)
    # The real advisories that name the M340, with their CVEs.
    advisories = page.locator("#advisories tbody tr[data-id]")
    expect(advisories.first).to_be_visible()
    assert advisories.count() >= 1
    cves = " ".join(advisories.locator(".cves").all_inner_texts())
    assert "CVE-" in cves
    shoot("device")

    # Triage two of its findings from its findings list.
    follow(page, "text=all findings of this device")
    open_rows = page.locator("#findings tbody tr[data-status=open]")
    assert open_rows.count() >= 2
    picked = open_rows.evaluate_all("rows => rows.slice(0, 2).map(r => r.dataset.id)")
    for finding_id in picked:
        page.check(f"#pick-{finding_id}")
    page.select_option("#action", "false-positive")
    page.fill("#reason", "bench PLC on the test network, not production")
    follow(page, "#apply-triage")
    expect(page.locator("#notice")).to_have_text("2 findings triaged")
    for finding_id in picked:
        expect(page.locator(f"#findings tr[data-id='{finding_id}'] .status")).to_have_text(
            "false-positive"
        )
    shoot("findings")

    # The site's trend now, then a rescan that finds one more device, then the trend again.
    page.goto(f"{server}/console/sites/{plant.north}")
    chart = page.locator("svg#trend")
    expect(chart).to_be_visible()
    before = chart.get_attribute("data-latest")
    lines_before = chart.locator("polygon[data-severity]").evaluate_all(
        "lines => lines.map(l => l.getAttribute('points'))"
    )
    shoot("site-before")
    simulators.start(
        _modbus(
            "rtu",
            RTU,
            {
                "vendor": "WAGO",
                "product_code": "750-881",
                "revision": "01.07.13",
                "product_name": "ETHERNET Controller",
                "model": "750-881",
            },
        )
    )
    rescan = _scan(server, plant)
    page.goto(f"{server}/console/scans/{rescan}")
    # The run page follows the event stream and shows the run's end without a manual reload.
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=scaled(60) * 1000)
    shoot("scan")
    _wait(server, plant, rescan)
    page.goto(f"{server}/console/sites/{plant.north}")
    after = chart.get_attribute("data-latest")
    lines_after = chart.locator("polygon[data-severity]").evaluate_all(
        "lines => lines.map(l => l.getAttribute('points'))"
    )
    assert after != before, (before, after)
    assert lines_after != lines_before
    shoot("site-after")
