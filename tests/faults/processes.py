"""Real processes for the fault suite: ``cybermission serve`` and ``scan`` as subprocesses against
the lab's simulators on loopback, the store they share, and bounded waits."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from cybermission.db import create_db_engine, session_scope
from cybermission.scans.models import ObservationRecord, ScanRun
from tests.conftest import _DROPPER, POSTGRES_ADMIN_URL
from tests.timing import scaled

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fault-suite-admin-token-0123456789"
# The fault suite's lab: 64 addresses from here (tests/conftest.py lists the address plan).
LAB_BASE = "127.60.0.0"
LAB_TARGETS = "127.60.0.0/26"
# Heartbeats every half second, a lease of a few: a dead owner is noticed in seconds.
FAST_LEASES = {
    "CYBERMISSION_RUNS__HEARTBEAT_S": "0.5",
    "CYBERMISSION_RUNS__LEASE_S": "5",
    "CYBERMISSION_RUNS__REAPER_INTERVAL_S": "1",
}


def wait_for(check: Callable[[], T | None], *, timeout_s: float, what: str) -> T:
    """Poll ``check`` until it returns something other than None/False; fail after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.2)


@contextmanager
def lab_process(
    base: str, state: Path, *, without: tuple[str, ...] = ()
) -> Iterator[list[dict[str, Any]]]:
    """The lab's simulators on ``base`` in a process of their own (but the devices named in
    ``without``: gone offline) until the block ends; yields the devices the state file lists."""
    log = state.with_suffix(".log")
    leave_out = [arg for name in without for arg in ("--without", name)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scanners.lab",
                "--base",
                base,
                "--state-file",
                str(state),
                *leave_out,
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> list[dict[str, Any]] | None:
            if proc.poll() is not None:
                raise AssertionError(f"the lab exited:\n{log.read_text()[-2000:]}")
            if not state.exists():
                return None
            devices: list[dict[str, Any]] = json.loads(state.read_text())["devices"]
            return devices

        yield wait_for(ready, timeout_s=scaled(60), what=f"the lab on {base}")
    finally:
        proc.terminate()
        proc.wait(timeout=scaled(30))


@dataclass
class Store:
    """A fresh store the processes share: a SQLite file or a PostgreSQL database of its own."""

    url: str
    kind: str
    _engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_db_engine(self.url)
        return self._engine

    def runs(self) -> list[ScanRun]:
        with session_scope(self.engine) as session:
            return list(session.exec(select(ScanRun).order_by(ScanRun.created_at)).all())

    def run(self, run_id: str) -> ScanRun:
        with session_scope(self.engine) as session:
            run = session.get(ScanRun, run_id)
            assert run is not None, run_id
            return run

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


@contextmanager
def postgres_store(template: str | None = None) -> Iterator[Store]:
    """A database of its own: empty, or a copy of the database ``template`` (which nothing may be
    connected to)."""
    admin = create_db_engine(POSTGRES_ADMIN_URL)
    name = f"cm_fault_{uuid.uuid4().hex[:12]}"
    copy_of = f' TEMPLATE "{template}"' if template is not None else ""
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
    store = Store(url=POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", kind="postgres")
    try:
        yield store
    finally:
        store.dispose()
        if template is None:  # a template itself: dropped at once, the session is ending
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            _DROPPER.drop(name)  # a test's copy: in the background (tests/conftest.py)
        admin.dispose()


# Backends ``terminate_backends`` ends: every one of the store's database but the asking one, or
# only those holding an advisory lock (the scheduler's lock connection, the delivery worker's).
EVERY_BACKEND = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = :db AND pid <> pg_backend_pid()"
)
LOCK_HOLDERS = (
    "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l"
    " JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = :db"
)


def terminate_backends(
    store: Store,
    stop: threading.Event,
    ended: list[int],
    *,
    which: str = EVERY_BACKEND,
    every_s: float = 1.0,
) -> None:
    """Terminate ``which`` backends of the store's database every ``every_s`` until ``stop``
    (``pg_terminate_backend``, as a PostgreSQL restart or a failover looks to the clients);
    ``ended`` gets how many each round ended."""
    database = store.url.rsplit("/", 1)[-1]
    admin = create_db_engine(POSTGRES_ADMIN_URL)
    try:
        while not stop.wait(every_s):
            try:
                with admin.connect() as connection:
                    count = connection.execute(text(which), {"db": database}).scalar_one()
                    connection.commit()
                ended.append(int(count))
            except SQLAlchemyError:
                continue
    finally:
        admin.dispose()


# Few hosts at a time, each quickly: a scan of the lab lasts half a minute and stores its hosts
# all along it, so a fault "mid-scan" finds some hosts stored and more to come.
TRICKLE = {
    "CYBERMISSION_PACING__HOSTS_IN_FLIGHT": "4",
    "CYBERMISSION_PACING__PER_HOST_RATE_PER_S": "20",
}


def environment(store: Store, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CYBERMISSION_DATABASE_URL": store.url,
        "CYBERMISSION_ADMIN_TOKEN": TOKEN,
        "CYBERMISSION_UDP_PORTS": "[]",
        "CYBERMISSION_LOG_LEVEL": "INFO",
        **FAST_LEASES,
        **TRICKLE,
        **extra,
    }


def cli(store: Store, *args: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start ``cybermission ARGS``: stderr to ``log``, stdout to ``log`` + ``.out``; the caller
    waits or signals."""
    with log.open("ab") as errors, log.with_suffix(".out").open("ab") as results:
        return subprocess.Popen(
            [sys.executable, "-m", "cybermission", *args],
            env=environment(store, **env),
            cwd=ROOT,
            stdout=results,
            stderr=errors,
        )


def run_cli(store: Store, *args: str, log: Path, timeout_s: float = 120, **env: str) -> int:
    proc = cli(store, *args, log=log, **env)
    return proc.wait(timeout=scaled(timeout_s))


def scan_json(log: Path) -> dict[str, Any]:
    """The JSON report a ``scan --format json`` whose stderr went to ``log`` wrote."""
    results = log.with_suffix(".out")
    try:
        report: dict[str, Any] = json.loads(results.read_text())
    except ValueError as exc:
        raise AssertionError(f"no JSON report; stderr:\n{log.read_text()[-2000:]}") from exc
    return report


def inventory(report: dict[str, Any]) -> tuple[set[tuple[str, int, str]], list[tuple[str, ...]]]:
    """What a scan report says exists and is wrong, without ids: (address, port, protocol) of
    every service, and each finding as (rule, port, the asset's addresses), sorted."""
    addresses = {asset["id"]: tuple(sorted(asset["addresses"])) for asset in report["assets"]}
    services = {
        (address, service["port"], service["protocol"])
        for asset in report["assets"]
        for address in asset["addresses"]
        for service in asset["services"]
    }
    findings = sorted(
        (f["rule_id"], str(f["port"]), *addresses.get(f["asset_id"], ()))
        for f in report["findings"]
    )
    return services, findings


def stored_observations(store: Store, run_id: str) -> int:
    """Observation rows of a run really in the store (a batch written twice would show)."""
    with session_scope(store.engine) as session:
        return len(
            session.exec(
                select(ObservationRecord).where(ObservationRecord.scan_run_id == run_id)
            ).all()
        )


@dataclass
class Service:
    """``cybermission serve`` on a port of its own; ``client`` speaks to it as the admin."""

    store: Store
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Service":
        self.proc = cli(
            self.store,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            log=self.log,
            **self.env,
        )
        wait_for(self._answers, timeout_s=scaled(60), what=f"serve on :{self.port}")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.tail()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=scaled(30),
        )

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=scaled(timeout_s))

    def kill(self) -> None:
        """``kill -9``: nothing of the process runs after it."""
        self.signal(signal.SIGKILL)
        self.wait(30)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=scaled(30))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
