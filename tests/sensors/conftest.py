"""Fixtures of the distributed mode: a real RabbitMQ (uniquely named vhosts and users, removed
afterwards), a PostgreSQL store shared with subprocesses, sensors and the central worker as
subprocesses, and pymodbus lab devices on the per-site ranges 127.30/16 (A) and 127.31/16 (B)."""

import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission import models  # noqa: F401
from cybermission.config import PacingProfile, PacingSettings, Settings, load_settings
from cybermission.db import session_scope
from cybermission.migrations import upgrade_database
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.sensors import models as sensor_models  # noqa: F401
from cybermission.sensors.broker import SCAN_TASK, publish_task
from cybermission.sensors.messages import write_message
from cybermission.sensors.models import Chunk
from cybermission.sensors.relay import chunk_message
from cybermission.sensors.service import (
    approve_sensor,
    create_site_scan,
    enroll_sensor,
)
from cybermission.sensors.topology import (
    INGEST,
    SCAN_QUEUE,
    Management,
    sensor_permissions,
    site_vhost,
    vhost_url,
)
from cybermission.sites.models import Site
from cybermission.sites.onboarding import add_site
from cybermission.sites.service import get_site_or_raise
from scanners.lab.modbus_devices import LabDevice, LabDeviceKind, modbus_lab_devices
from tests.conftest import _postgres_engine
from tests.timing import scaled

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cybermission"]
MANAGEMENT = "http://127.0.0.1:15672"


def _rabbitmq_up() -> bool:
    try:
        return httpx.get(
            f"{MANAGEMENT}/api/overview", auth=("guest", "guest"), timeout=scaled(2)
        ).is_success
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def rabbitmq() -> None:
    if not _rabbitmq_up():
        if os.environ.get("CYBERMISSION_TEST_REQUIRE_POSTGRES") == "1":
            raise RuntimeError("RabbitMQ management API on 127.0.0.1:15672 is not reachable")
        pytest.skip("RabbitMQ with the management plugin is not running on 127.0.0.1")


@pytest.fixture
def pg_engine(rabbitmq: None, migrated_postgres_template: str) -> Iterator[Engine]:
    """A copy of the worker's migrated database (as `cybermission central` migrates: not
    create_all; tests/conftest.py)."""
    yield from _postgres_engine(template=migrated_postgres_template)


@dataclass
class Cluster:
    """One distributed deployment for one test: its own central vhost, sites and processes."""

    engine: Engine
    settings: Settings
    tmp: Path
    tag: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CYBERMISSION_DATABASE_URL=self.settings.database_url,
            CYBERMISSION_BROKER__CENTRAL_VHOST=self.settings.broker.central_vhost,
            CYBERMISSION_PACING__PROFILE="lab",
            CYBERMISSION_PACING__CONNECT_TIMEOUT_S="0.5",
            CYBERMISSION_PACING__PROBE_TIMEOUT_S=str(self.settings.pacing.probe_timeout_s),
            CYBERMISSION_SENSOR__FLUSH_INTERVAL_S="0.5",
            CYBERMISSION_SENSOR__CONTROL_POLL_S="0.5",
            CYBERMISSION_UDP_PORTS="[]",
            CYBERMISSION_LOG_LEVEL="INFO",
        )
        return env

    def site(self, letter: str, networks: list[str], *, organization: str = "") -> str:
        """A site with its networks; returns how the CLI names it: its slug, or
        ``ORGANISATION/SLUG`` when ``organization`` is given (two may share a slug)."""
        slug = f"{letter}{self.tag}"
        with session_scope(self.engine) as session:
            if organization:
                site = add_site(session, slug=slug, networks=networks, organization=organization)
            else:
                site = add_site(session, slug=slug, networks=networks)
            self.sites.append(site.id)
        return f"{organization}/{slug}" if organization else slug

    def site_id(self, slug: str) -> str:
        """The id of a site named by its slug (as :meth:`site` returns it, no organisation)."""
        with Session(self.engine) as session:
            return session.exec(select(Site).where(Site.slug == slug)).one().id

    def vhost(self, site: str) -> str:
        """The broker vhost of a site named as :meth:`site` returns it."""
        with Session(self.engine) as session:
            return site_vhost(get_site_or_raise(session, slug=site).id)

    def enroll(self, slug: str, *, approve: bool = True) -> tuple[str, Path]:
        with session_scope(self.engine) as session:
            bundle = enroll_sensor(session, self.settings, slug=slug)
        self.users.append(bundle["broker_url"].split("//", 1)[1].split(":", 1)[0])
        path = self.tmp / f"bundle-{bundle['sensor_id']}.json"
        path.write_text(json.dumps(bundle))
        if approve:
            with session_scope(self.engine) as session:
                approve_sensor(session, self.settings, sensor_id=bundle["sensor_id"])
        return bundle["sensor_id"], path

    def scan(self, slug: str, *, chunk: int = 8, **kwargs: Any) -> str:
        """A site scan of port 502 in chunks of ``chunk`` hosts; returns the run id."""
        with session_scope(self.engine) as session:
            run = create_site_scan(
                session, self.settings, slug=slug, ports=[502], hosts_per_chunk=chunk, **kwargs
            )
            return run.id

    def bundle(self, path: Path) -> dict[str, Any]:
        return dict(json.loads(path.read_text()))

    def sensor_user(self, bundle: Path) -> str:
        return str(self.bundle(bundle)["broker_url"]).split("//", 1)[1].split(":", 1)[0]

    def cut_link(self, slug: str, user: str) -> int:
        """The site's link down, as the broker sees it: the sensor's open connections are closed
        and reconnects refused (no permission on its vhost) until :meth:`restore_link`."""
        with Management(self.settings.broker) as mgmt:
            mgmt.clear_permissions(self.vhost(slug), user)
            return mgmt.close_connections(user)

    def restore_link(self, slug: str, user: str) -> None:
        with Management(self.settings.broker) as mgmt:
            # The user is sensor.<slug>.<sensor id>.
            mgmt.set_permissions(
                self.vhost(slug), user, sensor_permissions(user.rpartition(".")[2])
            )

    def connections(self, *, user: str | None = None, vhost: str | None = None) -> int:
        with Management(self.settings.broker) as mgmt:
            return sum(
                1
                for c in mgmt.connections()
                if (user is None or c.get("user") == user)
                and (vhost is None or c.get("vhost") == vhost)
            )

    def ingest_consumers(self) -> int:
        """Consumers of the central ingest queue: the central worker, once it really listens."""
        with Management(self.settings.broker) as mgmt:
            return mgmt.queue_consumers(self.settings.broker.central_vhost, INGEST)

    def start(
        self, *args: str, log: str, environ: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (self.tmp / log).open("ab") as out:
            proc = subprocess.Popen(
                [*CLI, *args],
                cwd=ROOT,
                env={**self.env(), **(environ or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def start_sensor(
        self, slug: str, bundle: Path, *, journal: str | None = None
    ) -> subprocess.Popen[bytes]:
        slug = slug.rpartition("/")[2]  # the bundle names its site by slug
        journal_path = self.tmp / (journal or f"journal-{slug}.db")
        return self.start(
            "sensor",
            "--site",
            slug,
            "--bundle",
            str(bundle),
            "--journal",
            str(journal_path),
            log=f"sensor-{slug}.log",
        )

    def start_central(self, *, database_url: str | None = None) -> subprocess.Popen[bytes]:
        """The central worker, on the cluster's store or at ``database_url`` (the same store
        through a relay a test cuts)."""
        environ = {"CYBERMISSION_DATABASE_URL": database_url} if database_url else None
        return self.start("central", log="central.log", environ=environ)

    def stop(self, proc: subprocess.Popen[bytes], *, kill: bool = False) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=scaled(15))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def wait_run(self, run_id: str, *, timeout_s: float = scaled(60.0)) -> ScanRun:
        """Wait (serving the simulators meanwhile) until the run ended."""
        return await self.wait_for(lambda: _ended(self.engine, run_id), timeout_s=timeout_s)

    async def wait_for(self, check: Callable[[], Any], *, timeout_s: float = scaled(60.0)) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            value = check()
            if value:
                return value
            for proc in self.procs:
                if proc.poll() not in (None, 0, -9, -15):
                    raise AssertionError(f"a subprocess died: {self.logs()}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out; logs:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("*.log"))
        )


def _ended(engine: Engine, run_id: str) -> ScanRun | None:
    with Session(engine) as session:
        run = session.get(ScanRun, run_id)
        if run is not None and run.status not in (ScanStatus.QUEUED, ScanStatus.RUNNING):
            return run
    return None


@pytest.fixture
def cluster(pg_engine: Engine, tmp_path: Path) -> Iterator[Cluster]:
    tag = uuid.uuid4().hex[:8]
    pacing = PacingSettings(
        profile=PacingProfile.LAB, connect_timeout_s=scaled(0.5), probe_timeout_s=scaled(1.0)
    )
    settings = load_settings(
        database_url=pg_engine.url.render_as_string(hide_password=False),
        pacing=pacing,
        rules_dirs=[ROOT / "rules"],
        udp_ports=[],
        broker={"central_vhost": f"cm-test-{tag}"},
    )
    c = Cluster(engine=pg_engine, settings=settings, tmp=tmp_path, tag=tag)
    try:
        yield c
    finally:
        for proc in c.procs:
            c.stop(proc, kill=True)
        with Management(settings.broker) as mgmt:
            for site_id in c.sites:
                mgmt.delete_site(site_id)
            for user in c.users:
                mgmt.delete_user(user)
            mgmt.delete_vhost(settings.broker.central_vhost)


async def start_devices(base: str, *, misfits: bool = False) -> list[LabDevice]:
    devices = modbus_lab_devices(base, misfits=misfits)
    for device in devices:
        await device.start()
    return devices


@pytest.fixture
async def devices() -> AsyncIterator[Callable[..., Any]]:
    started: list[LabDevice] = []

    async def start(base: str, *, misfits: bool = False) -> list[LabDevice]:
        found = await start_devices(base, misfits=misfits)
        started.extend(found)
        return found

    yield start
    for device in started:
        await device.stop()


def run_ids(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [r.id for r in session.exec(select(ScanRun)).all()]


def digest(engine: Engine) -> dict[str, Any]:
    """The database state a scan leaves, without ids and times: devices with their site,
    services, findings and events (alert outbox) by kind — what parity compares."""
    from collections import Counter

    from cybermission.events import Event
    from cybermission.findings.models import Finding
    from cybermission.inventory.models import Device, IPAddress, Service
    from cybermission.scans.models import ObservationRecord
    from cybermission.sites.models import Site

    with Session(engine) as session:
        sites = {s.id: s.slug for s in session.exec(select(Site)).all()}
        addresses: dict[str, list[str]] = {}
        for ip in session.exec(select(IPAddress)).all():
            addresses.setdefault(ip.device_id, []).append(ip.address)
        devices = {
            d.id: (
                sites.get(d.site_id or ""),
                d.serial,
                d.vendor,
                d.model,
                d.unit_id,
                tuple(sorted(addresses.get(d.id, []))),
            )
            for d in session.exec(select(Device)).all()
        }
        return {
            "devices": sorted(devices.values(), key=repr),
            "services": sorted(
                (
                    (devices[s.device_id], s.port, s.protocol, s.is_open)
                    for s in session.exec(select(Service)).all()
                ),
                key=repr,
            ),
            "findings": sorted(
                (
                    (f.rule_id, devices[f.device_id], f.port, str(f.status))
                    for f in session.exec(select(Finding)).all()
                ),
                key=repr,
            ),
            "events": sorted(
                Counter(str(e.kind) for e in session.exec(select(Event)).all()).items()
            ),
            "observations": len(session.exec(select(ObservationRecord)).all()),
        }


async def embedded_digest(
    tmp: Path, slug: str, networks: list[str], settings: Settings
) -> dict[str, Any]:
    """The same site scanned in the embedded mode (no broker) on a fresh SQLite store."""
    from cybermission.db import create_db_engine
    from cybermission.scans.pipeline import execute_scan
    from cybermission.scans.scopes import build_guard
    from cybermission.scans.service import create_scan_run

    engine = create_db_engine(f"sqlite:///{tmp}/embedded-{uuid.uuid4().hex[:6]}.db")
    upgrade_database(engine)
    try:
        with session_scope(engine) as session:
            add_site(session, slug=slug, networks=networks)
            run = create_scan_run(
                session,
                guard=build_guard(session, settings),
                targets=networks,
                ports=[502],
                settings=settings,
                requested_by="test",
                udp_ports=[],
            )
            run_id = run.id
        await execute_scan(engine=engine, settings=settings, scan_run_id=run_id)
        return digest(engine)
    finally:
        engine.dispose()


def requests_by_address(lab: list[LabDevice]) -> dict[str, int]:
    return {
        d.address: len(d.requests)
        for d in lab
        if d.kind in (LabDeviceKind.MODBUS, LabDeviceKind.GATEWAY)
    }


def republish(cluster: Cluster, slug: str, chunk: Chunk) -> None:
    with Session(cluster.engine) as session:
        run = session.get(ScanRun, chunk.scan_run_id)
        assert run is not None
        message = chunk_message(chunk, run)
    publish_task(
        vhost_url(cluster.settings.broker.url, cluster.vhost(slug)),
        exchange="",
        routing_key=SCAN_QUEUE,
        task_name=SCAN_TASK,
        args=[write_message(message)],
        task_id=str(uuid.uuid4()),
        timeout_s=scaled(5),
    )


def chunks_of(cluster: Cluster, run_id: str) -> list[Chunk]:
    with Session(cluster.engine) as session:
        return list(
            session.exec(select(Chunk).where(Chunk.scan_run_id == run_id).order_by(Chunk.seq)).all()
        )


def chunk_seq_of(chunks: list[Chunk], address: str) -> int:
    ip = ipaddress.ip_address(address)
    for chunk in chunks:
        for spec in chunk.targets:
            first, _, last = spec.partition("-")
            if ipaddress.ip_address(first) <= ip <= ipaddress.ip_address(last or first):
                return chunk.seq
    raise AssertionError(address)
