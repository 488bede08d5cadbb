"""Benchmark: the recording side of a scan (inventory, rules, findings, events) on both stores.

    python -m bench.inventory_writes [--hosts 1024] [--stores sqlite,postgres] [--repeat 3]

No device and no network: N synthetic hosts (a Modbus identity with its own serial on 502, a web
page on 80), written through the real ``store_batch`` / ``finish_run`` of
``cybermission.scans.recording`` in batches of ``WRITE_BATCH_HOSTS``, with the shipped rules, into
a fresh store. Two runs per repeat: the **first scan** (everything new) and the **rescan** (the
same answers again: every row exists, nothing changes). PostgreSQL is the machine's
(``CYBERMISSION_BENCH_POSTGRES_URL``, default the test server on 127.0.0.1:5432); a temporary
database is created and dropped.

The peer is the code before a change: run the same file against the old tree (``git worktree
add /tmp/before <commit>`` then ``PYTHONPATH=/tmp/before python -m bench.inventory_writes``) in
the same session and compare medians.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, func
from sqlmodel import Session, SQLModel, select

from bench.postgres_database import throwaway_database
from cybermission import models  # noqa: F401  (registers every table)
from cybermission.config import Settings, load_settings
from cybermission.db import create_db_engine, utcnow
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.inventory.models import ChangeEvent, Device
from cybermission.probes import Observation, Transport
from cybermission.scans import recording
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.probing import HostReport

POSTGRES_URL = os.environ.get(
    "CYBERMISSION_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NET = "127.60.0.0/16"


def _reports(hosts: int) -> list[HostReport]:
    reports = []
    for i in range(hosts):
        address = f"127.60.{i // 250}.{i % 250 + 1}"
        modbus = Observation(
            probe="modbus",
            protocol="modbus",
            address=address,
            port=502,
            transport=Transport.TCP,
            facts={
                "vendor": "Schneider Electric",
                "product_name": "Modicon M340",
                "model": f"BMX P34 20{i % 4}0",
                "product_code": f"BMXP3420{i % 4}0",
                "revision": "v2.70",
                "serial": f"SN{i:06d}",
            },
        )
        web = Observation(
            probe="http",
            protocol="http",
            address=address,
            port=80,
            transport=Transport.TCP,
            facts={"status": 200, "title": "Web server", "server": "Boa/0.94.14rc21"},
        )
        reports.append(
            HostReport(address=address, open_ports=(80, 502), observations=[modbus, web])
        )
    return reports


@contextmanager
def _store(kind: str, tmp: Path) -> Iterator[Engine]:
    if kind == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:8]}.db")
        SQLModel.metadata.create_all(engine)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    with throwaway_database(POSTGRES_URL) as engine:
        SQLModel.metadata.create_all(engine)
        yield engine


def _run(engine: Engine, settings: Settings, reports: list[HostReport]) -> tuple[float, float]:
    """One run's recording, timed from its state to its finished row: wall and this process's
    CPU seconds (the store's own work on PostgreSQL is another process's)."""
    guard = ScopeGuard([ScopeRule.build("bench", [NET])])
    with Session(engine) as session:
        run = ScanRun(
            targets=[NET],
            ports=[80, 502],
            udp_ports=[],
            requested_by="bench",
            hosts_total=len(reports),
            status=ScanStatus.RUNNING,
            started_at=utcnow(),
        )
        session.add(run)
        session.commit()
        run_id = run.id
    started, cpu = time.perf_counter(), time.process_time()
    with Session(engine) as session:
        state = recording.run_state(session, settings, run_id, guard=guard)
    state.probes_run = frozenset({"modbus", "http", "tcp"})
    state.progress.hosts_live = len(reports)
    batch = recording.WRITE_BATCH_HOSTS
    for start in range(0, len(reports), batch):
        recording.store_batch(engine, state, reports[start : start + batch])
    recording.finish_run(engine, state, ScanStatus.SUCCEEDED)
    return time.perf_counter() - started, time.process_time() - cpu


def _check(engine: Engine, hosts: int) -> None:
    """Both runs must have written what they should: one device per host, no spurious change."""
    with Session(engine) as session:
        devices = session.exec(select(func.count()).select_from(Device)).one()
        changes = session.exec(select(func.count()).select_from(ChangeEvent)).one()
    if devices != hosts or changes != hosts:
        sys.exit(f"wrong inventory: {devices} devices, {changes} change events for {hosts} hosts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=1024)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reports = _reports(args.hosts)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            database_url=f"sqlite:///{tmp}/unused.db", rules_dirs=[Path("rules")]
        )
        for kind in args.stores.split(","):
            first: list[tuple[float, float]] = []
            again: list[tuple[float, float]] = []
            for _ in range(args.repeat):
                with _store(kind, Path(tmp)) as engine:
                    first.append(_run(engine, settings, reports))
                    again.append(_run(engine, settings, reports))
                    _check(engine, args.hosts)
                print(
                    f"{kind}: first scan {first[-1][0]:6.2f} s (CPU {first[-1][1]:5.2f} s),"
                    f" rescan {again[-1][0]:6.2f} s (CPU {again[-1][1]:5.2f} s)",
                    file=sys.stderr,
                )
            print(
                f"{kind:8} {args.hosts} hosts: first scan median {_median(first, 0):6.2f} s"
                f" (CPU {_median(first, 1):5.2f} s), rescan median {_median(again, 0):6.2f} s"
                f" (CPU {_median(again, 1):5.2f} s) ({args.repeat} runs)"
            )


def _median(runs: list[tuple[float, float]], which: int) -> float:
    return statistics.median(run[which] for run in runs)


if __name__ == "__main__":
    main()
