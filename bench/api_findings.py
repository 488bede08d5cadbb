"""Latency of GET /api/v1/findings (p50/p99) on 1,000,000 findings in PostgreSQL and 100,000 in
SQLite, for the query shapes dashboards use: first page, filters, sorts, deep cursor pages, an
organisation-scoped token.

    .venv/bin/python -m bench.api_findings                      # both stores
    .venv/bin/python -m bench.api_findings --store sqlite --findings 100000
    .venv/bin/python -m bench.api_findings --store postgresql --loads idle,stress
    .venv/bin/python -m bench.api_findings --indexes            # with the proposed finding indexes

``--loads idle,stress`` measures the same loaded database twice: as the machine is, then under
``stress-ng --cpu 2`` (``bench/cpu_hogs.py``); each table names the load average it began at.

PostgreSQL: a scratch database is created on the machine's server (127.0.0.1:5432, or
CYBERMISSION_BENCH_POSTGRES_URL) and dropped at the end; rows are loaded with COPY. SQLite: a
temporary file, rows loaded with executemany. Requests go through the ASGI app in process (no
network), so the figures are the API's own cost: routing, auth, query, serialisation.
"""

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel, select

from api.app import create_app
from bench.cpu_hogs import cpu_hogs
from bench.postgres_database import kept_database, throwaway_database
from cybermission import models  # noqa: F401  (registers every table)
from cybermission.auth.models import Role
from cybermission.auth.service import create_token
from cybermission.config import load_settings
from cybermission.db import create_db_engine
from cybermission.sites.models import Organization, Site, Zone

ADMIN_URL = os.environ.get(
    "CYBERMISSION_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TOKEN = "bench-admin-token-0123456789abcdef"
DEVICES = 20_000
SITES = 20
SEVERITIES = ("info", "low", "medium", "high", "critical")
STATUSES = ("open", "open", "open", "acknowledged", "resolved", "false-positive")
PROTOCOLS = ("modbus", "s7", "enip", "bacnet", "opcua")
T0 = datetime(2025, 1, 1, tzinfo=UTC)

# The indexes a keyset page needs: every sort key with id, and the common equality filters in
# front of the default sort (first_seen_at, id).
PROPOSED_INDEXES = {
    "ix_finding_first_seen_id": "finding (first_seen_at, id)",
    "ix_finding_last_seen_id": "finding (last_seen_at, id)",
    "ix_finding_score_id": "finding (score, id)",
    "ix_finding_severity_first_seen_id": "finding (severity, first_seen_at, id)",
    "ix_finding_status_first_seen_id": "finding (status, first_seen_at, id)",
    "ix_finding_status_score_id": "finding (status, score, id)",
    "ix_device_organization_site": "device (organization_id, site_id, id)",
}


def _finding_rows(count: int, device_ids: list[str]) -> Iterator[tuple[object, ...]]:
    rng = random.Random(5)
    for index in range(count):
        device = device_ids[index % len(device_ids)]
        rule = f"rule-{index % 40:02d}"
        seen = T0 + timedelta(seconds=index * 7)
        yield (
            str(uuid.UUID(int=rng.getrandbits(128))),
            f"{rule}|{device}|{index}",
            rule,
            device,
            502,
            rng.choice(PROTOCOLS),
            f"finding {rule}",
            rng.choice(SEVERITIES),
            round(rng.uniform(0, 10), 2),
            "{}",
            rng.choice(STATUSES),
            "{}",
            seen,
            seen + timedelta(days=rng.randint(0, 90)),
        )


COLUMNS = (
    "id, dedup_key, rule_id, device_id, port, protocol, title, severity, score, "
    "score_breakdown, status, evidence, first_seen_at, last_seen_at"
)


def populate(engine: Engine, findings: int) -> dict[str, str]:
    """Organisations, sites, devices, then ``findings`` findings; returns ids for the queries."""
    SQLModel.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        orgs = [Organization(slug=f"org-{i}", name=f"Org {i}") for i in range(2)]
        session.add_all(orgs)
        session.flush()
        sites = [
            Site(organization_id=orgs[i % 2].id, slug=f"site-{i}", name=f"Site {i}")
            for i in range(SITES)
        ]
        session.add_all(sites)
        session.flush()
        zones = [Zone(site_id=s.id, name="cell") for s in sites]
        session.add_all(zones)
        session.flush()
        org_token = create_token(
            session, name="bench-org", role=Role.VIEWER, organization_id=orgs[0].id
        ).secret
        session.commit()
        ids = {"site": sites[2].id, "org_token": org_token}
    device_ids = [str(uuid.uuid4()) for _ in range(DEVICES)]
    now = T0.replace(tzinfo=None) if engine.dialect.name == "sqlite" else T0
    device_rows = [
        (d, f"dev {i}", orgs_id, site.id, zones[i % SITES].id, now, now)
        for i, d in enumerate(device_ids)
        for site in [sites[i % SITES]]
        for orgs_id in [site.organization_id]
    ]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        device_sql = (
            "INSERT INTO device (id, name, organization_id, site_id, zone_id, first_seen_at, "
            "last_seen_at, provenance, absent_scans) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, "
            "'{{}}', 0)"
        )
        if engine.dialect.name == "postgresql":
            with cursor.copy(
                "COPY device (id, name, organization_id, site_id, zone_id, first_seen_at, "
                "last_seen_at, provenance, absent_scans) FROM STDIN"
            ) as copy:
                for row in device_rows:
                    copy.write_row((*row, "{}", 0))
            with cursor.copy(f"COPY finding ({COLUMNS}) FROM STDIN") as copy:
                for finding in _finding_rows(findings, device_ids):
                    copy.write_row(finding)
        else:
            cursor.executemany(device_sql.format(p="?"), device_rows)
            placeholders = ", ".join("?" * 14)
            batch: list[tuple[object, ...]] = []
            for finding in _finding_rows(findings, device_ids):
                batch.append(
                    tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in finding)
                )
                if len(batch) == 50_000:
                    cursor.executemany(
                        f"INSERT INTO finding ({COLUMNS}) VALUES ({placeholders})", batch
                    )
                    batch.clear()
            if batch:
                cursor.executemany(
                    f"INSERT INTO finding ({COLUMNS}) VALUES ({placeholders})", batch
                )
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return ids


def add_indexes(engine: Engine) -> None:
    with engine.begin() as conn:
        for name, target in PROPOSED_INDEXES.items():
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON {target}"))
        conn.execute(text("ANALYZE"))


async def measure(engine: Engine, ids: dict[str, str], repeat: int) -> dict[str, list[float]]:
    settings = load_settings(
        database_url=str(engine.url), rules_dirs=[Path("rules")], admin_token=SecretStr(TOKEN)
    )
    app = create_app(settings, engine=engine)
    admin = {"Authorization": f"Bearer {TOKEN}"}
    org = {"Authorization": f"Bearer {ids['org_token']}"}
    shapes: dict[str, tuple[dict[str, str], dict[str, str]]] = {
        "first page (100)": ({}, admin),
        "severity=critical": ({"severity": "critical"}, admin),
        "status=open, sort=-score": ({"status": "open", "sort": "-score"}, admin),
        "sort=-last_seen_at": ({"sort": "-last_seen_at"}, admin),
        "site_id filter": ({"site_id": ids["site"]}, admin),
        "last_seen range": ({"last_seen_after": "2025-03-01T00:00:00Z"}, admin),
        "org-scoped token": ({}, org),
        "org token, severity=high": ({"severity": "high"}, org),
    }
    timings: dict[str, list[float]] = {name: [] for name in shapes}
    timings["10th page via cursor"] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for params, headers in shapes.values():
                # One untimed request first: the first of a shape compiles its SQL and warms
                # the caches, and with 100 requests p99 is the slowest one.
                await client.get("/api/v1/findings", params=params, headers=headers)
            # Round robin over the shapes: a burst of load on this shared machine lands on all
            # of them alike instead of on the one being measured.
            for _ in range(repeat):
                for name, (params, headers) in shapes.items():
                    started = time.perf_counter()
                    response = await client.get("/api/v1/findings", params=params, headers=headers)
                    timings[name].append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
            for _ in range(max(1, repeat // 10)):
                cursor = None
                for _page in range(10):
                    started = time.perf_counter()
                    params = {"cursor": cursor} if cursor else {}
                    response = await client.get("/api/v1/findings", params=params, headers=admin)
                    timings["10th page via cursor"].append(time.perf_counter() - started)
                    cursor = response.json()["next_cursor"]
    return timings


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(
    store: str, findings: int, timings: dict[str, list[float]], indexed: bool, load: str = "idle"
) -> None:
    print(
        f"\n{store}: {findings:,} findings, indexes {'proposed' if indexed else 'as migrated'}, "
        f"{load}, load at end {_loadavg()}"
    )
    print(f"{'query':32} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in timings.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"{name:32} {statistics.median(ordered) * 1000:8.1f} {p99 * 1000:8.1f}")


def measure_loads(
    store: str,
    engine: Engine,
    ids: dict[str, str],
    findings: int,
    repeat: int,
    loads: list[str],
    indexed: bool,
) -> None:
    for load in loads:
        with cpu_hogs(load == "stress"):
            label = "stress-ng --cpu 2" if load == "stress" else "idle"
            started_load = _loadavg()
            timings = asyncio.run(measure(engine, ids, repeat))
            report(store, findings, timings, indexed, f"{label} (load at start {started_load})")


def run_store(
    store: str,
    findings: int,
    repeat: int,
    indexes: bool,
    loads: list[str],
    database: str | None = None,
) -> None:
    if store == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_db_engine(f"sqlite:///{tmp}/bench.db")
            started = time.perf_counter()
            ids = populate(engine, findings)
            print(f"sqlite: loaded in {time.perf_counter() - started:.1f} s")
            measure_loads(store, engine, ids, findings, repeat, loads, False)
            if indexes:
                add_indexes(engine)
                measure_loads(store, engine, ids, findings, repeat, loads, True)
            engine.dispose()
        return
    if database is not None:
        # A kept database (loading 1M rows takes minutes on a busy machine): filled once.
        engine = kept_database(ADMIN_URL, database)
        kept = _kept_ids(engine)
        measure_loads(
            store, engine, kept or populate(engine, findings), findings, repeat, loads, False
        )
        engine.dispose()
        return
    with throwaway_database(ADMIN_URL) as engine:
        started = time.perf_counter()
        ids = populate(engine, findings)
        print(f"postgresql: loaded in {time.perf_counter() - started:.1f} s", flush=True)
        measure_loads(store, engine, ids, findings, repeat, loads, False)
        if indexes:
            add_indexes(engine)
            measure_loads(store, engine, ids, findings, repeat, loads, True)


def _kept_ids(engine: Engine) -> dict[str, str] | None:
    """The ids :func:`populate` returned for a database it filled before (None: empty)."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, "finding"):
            return None
        site = conn.execute(text("SELECT id FROM site WHERE slug = 'site-2'")).scalar()
        if site is None:
            return None
    with Session(engine) as session:
        org = session.exec(select(Organization).where(Organization.slug == "org-0")).one()
        secret = create_token(
            session, name="bench-org", role=Role.VIEWER, organization_id=org.id
        ).secret
        session.commit()
    return {"site": str(site), "org_token": secret}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--findings", type=int, default=None, help="override the row count")
    parser.add_argument("--repeat", type=int, default=100, help="requests per query shape")
    parser.add_argument("--indexes", action="store_true", help="also measure with PROPOSED_INDEXES")
    parser.add_argument(
        "--loads", default="idle", help="comma-separated: idle, stress (stress-ng --cpu 2)"
    )
    parser.add_argument(
        "--database",
        default=None,
        help="PostgreSQL: use (and keep) this database, filled on first use, not a scratch one",
    )
    args = parser.parse_args()
    loads = [load.strip() for load in args.loads.split(",") if load.strip()]
    if unknown := set(loads) - {"idle", "stress"}:
        parser.error(f"--loads: unknown {sorted(unknown)}")
    if args.store in ("sqlite", "both"):
        run_store("sqlite", args.findings or 100_000, args.repeat, args.indexes, loads)
    if args.store in ("postgresql", "both"):
        run_store(
            "postgresql",
            args.findings or 1_000_000,
            args.repeat,
            args.indexes,
            loads,
            args.database,
        )


if __name__ == "__main__":
    main()
