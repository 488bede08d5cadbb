"""The done-when of issue 15, end to end on SQLite and PostgreSQL: six organisations in four
sectors, each with its own allocation, site, scope, tokens, webhook receiver and simulated Modbus
devices on loopback, scanned for real through the API. Then:

- the coordinator's sector and territory numbers are the sums of the organisations' own
  dashboards, and the one-organisation sectors are withheld;
- an imported advisory opens one campaign and notifies exactly the affected organisations
  (delivered to their receivers, each naming its own devices only);
- three organisations patch (the simulator restarts with fixed firmware) and rescan: the
  campaign's resolved findings move, what only one organisation still holds is withheld;
- the whole API walked as the coordinator names no device of an organisation that did not share.
"""

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Session

from api.app import create_app
from cybermission.alerts.worker import DeliveryWorker
from cybermission.config import PacingProfile, PacingSettings, Settings
from cybermission.db import utcnow
from cybermission.findings.advisories.store import import_advisories
from cybermission.territory.campaigns import rematch_and_open
from scanners.lab.modbus_devices import ANY_UNIT, OBJECT_NAMES, LabDevice
from tests.alerts.conftest import SECRET, HttpReceiver, _handler
from tests.api.conftest import AUTH, BASE_URL
from tests.api.territory_walk import walk
from tests.findings.advisories.test_store import csaf
from tests.timing import scaled

ADVISORY = "ICSA-99-015-01"
AFFECTED = {
    "vendor": "Schneider Electric",
    "product_code": "BMX P34 2020",
    "product_name": "Modicon M340",
    "model": "BMX P34 2020",
    "revision": "v2.5",
}
PATCHED = {**AFFECTED, "revision": "v3.60"}  # the advisory: fixed from SV3.51
OTHER = {
    "vendor": "Acme Controls",
    "product_code": "AC-100",
    "product_name": "Acme RTU",
    "model": "AC-100",
    "revision": "1.0",
}
# slug, sector, the identities of its devices (one address each, 127.45.<n>.11, .12, ...)
TERRITORY = [
    ("water-north", "water", [AFFECTED, OTHER]),
    ("water-south", "water", [AFFECTED]),
    ("water-east", "water", [AFFECTED, OTHER]),
    ("grid", "energy", [AFFECTED]),
    ("transit", "transport", [OTHER]),
    ("hospital", "health", [OTHER, OTHER]),
]
PATCHING = ("water-north", "water-south", "grid")
SHARING = "transit"


@dataclass
class Org:
    slug: str
    sector: str
    index: int
    id: str = ""
    admin: str = ""
    operator: str = ""
    viewer: str = ""
    devices: list[LabDevice] = field(default_factory=list)
    receiver: HttpReceiver = field(default_factory=HttpReceiver)

    @property
    def network(self) -> str:
        return f"127.45.{self.index}.0/24"


def _lab_device(org: Org, number: int, identity: dict[str, str]) -> LabDevice:
    objects = {OBJECT_NAMES[k]: v for k, v in identity.items()}
    return LabDevice(
        name=f"{org.slug}-{number}",
        address=f"127.45.{org.index}.{10 + number}",
        port=502,
        protocol="modbus",
        identity=dict(identity),
        units={ANY_UNIT: objects},
    )


@pytest.fixture
def orgs() -> Iterator[list[Org]]:
    servers = []
    made = []
    for index, (slug, sector, identities) in enumerate(TERRITORY, start=1):
        org = Org(slug, sector, index)
        org.devices = [_lab_device(org, n, i) for n, i in enumerate(identities, start=1)]
        server = ThreadingHTTPServer((f"127.45.{index}.200", 0), _handler(org.receiver))
        server.daemon_threads = True
        org.receiver.url = f"http://127.45.{index}.200:{server.server_address[1]}/hook"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        made.append(org)
    yield made
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def e2e_settings(api_settings: Settings) -> Settings:
    pacing = PacingSettings(
        profile=PacingProfile.LAB, connect_timeout_s=scaled(2.0), probe_timeout_s=scaled(3.0)
    )
    return api_settings.model_copy(update={"pacing": pacing, "udp_ports": []})


@pytest.fixture
async def world(
    e2e_settings: Settings, engine: Engine, orgs: list[Org]
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI, list[Org], str]]:
    for org in orgs:
        for device in org.devices:
            await device.start()
    app = create_app(e2e_settings, engine=engine)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                coordinator = await _set_up(client, orgs)
                yield client, app, orgs, coordinator
            await app.state.scan_tasks.stop_all("test teardown")
    finally:
        for org in orgs:
            for device in org.devices:
                await device.stop()


async def _ok(response: httpx.Response, status: int = 201) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def _token(client: httpx.AsyncClient, name: str, role: str, org: str | None) -> str:
    body = {"name": name, "role": role, "organization_id": org}
    return str((await _ok(await client.post("/api/v1/tokens", json=body, headers=AUTH)))["token"])


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def _set_up(client: httpx.AsyncClient, orgs: list[Org]) -> str:
    """Everything through the API, as a global admin and then each organisation's admin."""
    for org in orgs:
        body = {"slug": org.slug, "name": org.slug.title(), "sector": org.sector}
        org.id = (await _ok(await client.post("/api/v1/organizations", json=body, headers=AUTH)))[
            "id"
        ]
        await _ok(
            await client.post(
                "/api/v1/allocations",
                json={"organization_id": org.id, "cidr": org.network},
                headers=AUTH,
            )
        )
        org.admin = await _token(client, f"{org.slug}-admin", "admin", org.id)
        org.operator = await _token(client, f"{org.slug}-operator", "operator", org.id)
        org.viewer = await _token(client, f"{org.slug}-viewer", "viewer", org.id)
        admin = _auth(org.admin)
        site = await _ok(
            await client.post(
                "/api/v1/sites",
                json={"organization_id": org.id, "slug": f"site-{org.slug}", "name": org.slug},
                headers=admin,
            )
        )
        await _ok(
            await client.post(
                "/api/v1/scopes",
                json={"name": "plant", "cidrs": [org.network], "site_id": site["id"]},
                headers=admin,
            )
        )
        channel = await _ok(
            await client.post(
                "/api/v1/alert-channels",
                json={
                    "name": "soc",
                    "kind": "webhook",
                    "config": {"url": org.receiver.url, "secret": SECRET},
                },
                headers=admin,
            )
        )
        await _ok(
            await client.post(
                "/api/v1/alert-policies",
                json={
                    "name": "campaigns",
                    "channel_id": channel["id"],
                    "kinds": ["campaign.opened"],
                },
                headers=admin,
            )
        )
    return await _token(client, "metropolis", "coordinator", None)


async def _scan(client: httpx.AsyncClient, org: Org) -> None:
    started = await _ok(
        await client.post(
            "/api/v1/scans",
            json={"targets": [d.address for d in org.devices], "ports": [502]},
            headers=_auth(org.operator),
        ),
        202,
    )
    async with asyncio.timeout(scaled(120)):
        while True:
            run = (await client.get(started["url"], headers=_auth(org.viewer))).json()
            if run["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.2)
    assert run["status"] == "succeeded", run


async def _dashboard(client: httpx.AsyncClient, org: Org) -> Any:
    return await _ok(await client.get("/api/v1/dashboard", headers=_auth(org.viewer)), 200)


def _count(rows: list[dict[str, Any]], label: str) -> int:
    return next((r["count"] for r in rows if r["label"] == label), 0)


def _import(engine: Engine, tmp_path: Path) -> list[str]:
    """What `cybermission advisories import` does: import, match the inventory, open campaigns."""
    document = csaf(ADVISORY, products=(("Modicon M340 CPU (part numbers BMXP34*)", "< SV3.51"),))
    path = tmp_path / "advisory.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with Session(engine) as session:
        now = utcnow()
        report = import_advisories(session, path, now=now)
        _, campaigns = rematch_and_open(session, advisory_ids=report.changed, now=now)
        session.commit()
        return [c.id for c in campaigns]


async def test_territory_end_to_end(
    world: tuple[httpx.AsyncClient, FastAPI, list[Org], str], engine: Engine, tmp_path: Path
) -> None:
    client, app, orgs, coordinator = world
    by_slug = {o.slug: o for o in orgs}
    for org in orgs:
        await _scan(client, org)

    # 1. The coordinator's numbers are sums of the organisations' own views.
    views = {o.slug: await _dashboard(client, o) for o in orgs}
    exposure = await _ok(
        await client.get("/api/v1/territory/exposure", headers=_auth(coordinator)), 200
    )
    sectors = {s["sector"]: s["metrics"] for s in exposure["sectors"]}
    water = [o.slug for o in orgs if o.sector == "water"]
    assert sectors["water"]["devices"] == sum(views[s]["devices_total"] for s in water)
    assert exposure["territory"]["metrics"]["devices"] == sum(
        v["devices_total"] for v in views.values()
    )
    modbus = sum(_count(v["devices_by_protocol"], "modbus") for v in views.values())
    assert modbus == sum(len(o.devices) for o in orgs)
    assert exposure["territory"]["metrics"]["exposed_protocols"]["modbus"] == modbus
    for severity in ("critical", "high", "medium", "low", "info"):
        own = [_count(views[s]["findings_by_severity"], severity) for s in water]
        shown = sectors["water"]["open_findings"][severity]
        assert shown == (sum(own) if sum(1 for n in own if n) in (0, 3) else "withheld")
    for sector in ("energy", "transport", "health"):
        assert sectors[sector]["devices"] == "withheld"

    # 2. The advisory opens one campaign; exactly the affected organisations hear of it.
    [campaign_id] = _import(engine, tmp_path)
    await asyncio.to_thread(DeliveryWorker(engine).run_once)
    affected = {o.slug for o in orgs if AFFECTED in [d.identity for d in o.devices]}
    assert affected == {"water-north", "water-south", "water-east", "grid"}
    for org in orgs:
        received = [r for r in org.receiver.received if r.kind == "campaign.opened"]
        if org.slug not in affected:
            assert received == [], org.slug
            continue
        [notice] = received
        assert notice.signature_ok
        payload = notice.body["payload"]
        assert payload["subject"] == ADVISORY
        own = {d.address for d in org.devices if d.identity == AFFECTED}
        assert {a for d in payload["devices"] for a in d["addresses"]} == own
    campaign = await _ok(
        await client.get(f"/api/v1/territory/campaigns/{campaign_id}", headers=_auth(coordinator)),
        200,
    )
    assert campaign["now"]["organizations_affected"] == 4
    assert campaign["now"]["devices_affected"] == 4
    assert campaign["now"]["findings_resolved"] == 0
    assert campaign["organizations_notified"] == 4
    assert campaign["shared_devices"] == []

    # 3. Three organisations patch and rescan: progress moves.
    for slug in PATCHING:
        org = by_slug[slug]
        for number, device in enumerate(list(org.devices), start=1):
            if device.identity == AFFECTED:
                await device.stop()
                fixed = _lab_device(org, number, PATCHED)
                await fixed.start()
                org.devices[number - 1] = fixed
        await _scan(client, org)
    campaign = await _ok(
        await client.get(
            f"/api/v1/territory/campaigns/{campaign_id}?points=5", headers=_auth(coordinator)
        ),
        200,
    )
    assert campaign["now"]["findings_resolved"] == 3
    # Only water-east still holds it: one organisation, withheld.
    assert campaign["now"]["findings_active"] == "withheld"
    assert campaign["now"]["organizations_affected"] == "withheld"
    first = campaign["progress"][0]["territory"]
    assert (first["findings_active"], first["findings_resolved"]) == (4, 0)
    own = await _ok(
        await client.get("/api/v1/campaigns", headers=_auth(by_slug["water-east"].viewer)), 200
    )
    assert [c["subject"] for c in own] == [ADVISORY]
    assert len(own[0]["devices_active"]) == 1
    fixed_view = await _ok(
        await client.get("/api/v1/campaigns", headers=_auth(by_slug["grid"].viewer)), 200
    )
    assert fixed_view[0]["devices_active"] == []

    # 4. One organisation shares; the whole API, walked as the coordinator, names no other's device.
    sharing = by_slug[SHARING]
    await _ok(
        await client.post(
            f"/api/v1/organizations/{sharing.id}/shares",
            json={"scope": "full"},
            headers=_auth(sharing.admin),
        )
    )
    secrets: list[str] = []
    device_ids: list[str] = []
    # Names and serials the sharing organisation shows too (the same product makes the same
    # name): theirs to show, so not counted as another's.
    theirs: set[str] = set()
    for org in orgs:
        assets = (await _ok(await client.get("/api/v1/assets", headers=_auth(org.viewer)), 200))[
            "items"
        ]
        if org.slug == SHARING:
            shared = await _ok(
                await client.get(
                    f"/api/v1/territory/organizations/{org.id}/devices", headers=_auth(coordinator)
                ),
                200,
            )
            assert sorted(d["id"] for d in shared) == sorted(a["id"] for a in assets)
            theirs |= {v for d in shared for v in (d["name"], d["serial"]) if v}
            continue
        for asset in assets:
            device_ids.append(asset["id"])
            detail = await _ok(
                await client.get(f"/api/v1/assets/{asset['id']}", headers=_auth(org.viewer)), 200
            )
            assert detail["addresses"]
            secrets += [asset["id"], *detail["addresses"]]
            secrets += [v for v in (asset.get("name"), asset.get("serial")) if v and len(v) >= 6]
    secrets = [s for s in secrets if s not in theirs]
    assert len(secrets) >= 2 * len(device_ids)  # at least the id and address of every other device
    ids = [o.id for o in orgs] + device_ids[:6] + [campaign_id]
    count, leaks, successes = await walk(
        client, app, headers=_auth(coordinator), ids=ids, secrets=secrets
    )
    assert leaks == []
    assert count > 500
    # What the coordinator read at all: territory routes only.
    readable = {k.split(" ")[1].split("/")[3] for k in successes if k.startswith("GET /api")}
    assert readable == {"territory"}
