"""Benchmark: 4 sites x 1,024 simulated Modbus devices, scanned by 4 sensors vs the embedded mode.

    python -m bench.scale_out [--per-site 1024] [--chunk 256]

Simulators: real pymodbus servers (bench.modbus_identify's regular-object devices), one child
process per site, on 127.30.64.0/22, 127.30.72.0/22, 127.31.64.0/22 and 127.31.72.0/22. Both
modes write to a fresh PostgreSQL database on 127.0.0.1:5432 with the lab pacing profile and
port 502 only. Embedded: one run over the four networks in this process (no broker).
Distributed: the machine's RabbitMQ, `cybermission central` and four `cybermission sensor`
subprocesses, one site each; timed from the runs' creation to the last run's end. Prints both wall
times, their ratio and the ingestion rate (observation rows per second into PostgreSQL).
"""

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, func, text
from sqlmodel import Session, select

from cybermission.config import PacingProfile, PacingSettings, Settings, load_settings
from cybermission.db import create_db_engine, session_scope
from cybermission.migrations import upgrade_database
from cybermission.scans.models import ObservationRecord, ScanRun, ScanStatus
from cybermission.scans.pipeline import execute_scan
from cybermission.scans.scopes import build_guard
from cybermission.scans.service import create_scan_run
from cybermission.sensors.models import ChunkPart
from cybermission.sensors.service import (
    approve_sensor,
    create_site_scan,
    enroll_sensor,
)
from cybermission.sensors.topology import Management
from cybermission.sites.onboarding import add_site

BASES = ("127.30.64.0", "127.30.72.0", "127.31.64.0", "127.31.72.0")
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parents[1]
# Loopback pacing, the same for both modes: rates lifted, but at most 256 hosts in flight per
# scanning process (the lab profile's 4,096 overloads pymodbus servers into timeouts).
PACING = PacingSettings(
    profile=PacingProfile.SAFE,
    global_rate_per_s=1_000_000.0,
    per_host_rate_per_s=1_000_000.0,
    hosts_in_flight=256,
    sockets_in_flight=4096,
    connect_timeout_s=1.0,
    probe_timeout_s=2.0,
)


def _network(base: str, count: int) -> str:
    prefix = 32 - (count - 1).bit_length()
    return str(ipaddress.ip_network(f"{base}/{prefix}"))


def _database(name: str) -> Engine:
    admin = create_db_engine(ADMIN)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = create_db_engine(ADMIN.rsplit("/", 1)[0] + f"/{name}")
    upgrade_database(engine)
    return engine


def _drop(engine: Engine) -> None:
    name = engine.url.database
    engine.dispose()
    admin = create_db_engine(ADMIN)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _observations(engine: Engine) -> int:
    """Observations of identified Modbus devices (a timeout leaves a bare tcp-connect one)."""
    with Session(engine) as session:
        query = select(func.count()).where(ObservationRecord.probe == "modbus")
        return int(session.exec(query.select_from(ObservationRecord)).one())


def _ingest_span_s(engine: Engine) -> float:
    """From the first results part applied to the last: the central ingestion's busy span."""
    with Session(engine) as session:
        first, last = session.exec(
            select(func.min(ChunkPart.ingested_at), func.max(ChunkPart.ingested_at))
        ).one()
    return max((last - first).total_seconds(), 1e-3) if first and last else 0.0


def _settings(engine: Engine, tag: str) -> Settings:
    return load_settings(
        database_url=engine.url.render_as_string(hide_password=False),
        pacing=PACING,
        rules_dirs=[ROOT / "rules"],
        udp_ports=[],
        broker={"central_vhost": f"cm-bench-{tag}"},
    )


def embedded(networks: Sequence[str], tag: str) -> tuple[float, int]:
    engine = _database(f"cm_bench_emb_{tag}")
    settings = _settings(engine, tag)
    try:
        with session_scope(engine) as session:
            for i, net in enumerate(networks):
                add_site(session, slug=f"s{i}{tag}", networks=[net])
            run = create_scan_run(
                session, guard=build_guard(session, settings), targets=list(networks),
                ports=[502], settings=settings, requested_by="bench", udp_ports=[],
            )  # fmt: skip
            run_id = run.id
        started = time.perf_counter()
        asyncio.run(execute_scan(engine=engine, settings=settings, scan_run_id=run_id))
        return time.perf_counter() - started, _observations(engine)
    finally:
        _drop(engine)


def distributed(
    networks: Sequence[str], tag: str, chunk: int, tmp: Path
) -> tuple[float, int, float]:
    engine = _database(f"cm_bench_dist_{tag}")
    settings = _settings(engine, tag)
    env = dict(os.environ)
    env.update(
        CYBERMISSION_DATABASE_URL=settings.database_url,
        CYBERMISSION_BROKER__CENTRAL_VHOST=settings.broker.central_vhost,
        **{f"CYBERMISSION_PACING__{k.upper()}": str(v) for k, v in PACING.model_dump().items()},
        CYBERMISSION_UDP_PORTS="[]",
        CYBERMISSION_LOG_LEVEL="WARNING",
        CYBERMISSION_SENSOR__FLUSH_INTERVAL_S="1",
    )
    slugs = [f"s{i}{tag}" for i in range(len(networks))]
    users: list[str] = []
    site_ids: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []
    cli = [sys.executable, "-m", "cybermission"]
    try:
        with session_scope(engine) as session:
            for slug, net in zip(slugs, networks, strict=True):
                site_ids.append(add_site(session, slug=slug, networks=[net]).id)
        for slug in slugs:
            with session_scope(engine) as session:
                bundle = enroll_sensor(session, settings, slug=slug)
                approve_sensor(session, settings, sensor_id=bundle["sensor_id"])
            users.append(bundle["broker_url"].split("//", 1)[1].split(":", 1)[0])
            path = tmp / f"{slug}.json"
            path.write_text(json.dumps(bundle))
            procs.append(subprocess.Popen(
                [*cli, "sensor", "--site", slug, "--bundle", str(path),
                 "--journal", str(tmp / f"{slug}.db")],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                stderr=(tmp / f"{slug}.log").open("wb"),
            ))  # fmt: skip
        procs.append(subprocess.Popen(
            [*cli, "central"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
            stderr=(tmp / "central.log").open("wb"),
        ))  # fmt: skip
        time.sleep(3)  # workers connected
        started = time.perf_counter()
        with session_scope(engine) as session:
            runs = [
                create_site_scan(
                    session, settings, slug=slug, ports=[502], udp_ports=[],
                    hosts_per_chunk=chunk, requested_by="bench",
                ).id
                for slug in slugs
            ]  # fmt: skip
        while True:
            with Session(engine) as session:
                states = [session.get(ScanRun, r) for r in runs]
                if all(
                    s is not None and s.status not in (ScanStatus.QUEUED, ScanStatus.RUNNING)
                    for s in states
                ):
                    break
            time.sleep(0.1)
        return time.perf_counter() - started, _observations(engine), _ingest_span_s(engine)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        with Management(settings.broker) as mgmt:
            for site_id in site_ids:
                mgmt.delete_site(site_id)
            for user in users:
                mgmt.delete_user(user)
            mgmt.delete_vhost(settings.broker.central_vhost)
        _drop(engine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out")
    parser.add_argument("--per-site", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=256)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # device timeouts are counted, not printed
    tag = uuid.uuid4().hex[:6]
    networks = [_network(base, args.per_site) for base in BASES]
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.modbus_identify",
                "serve",
                "--base",
                base,
                "--devices",
                str(args.per_site),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for base in BASES
    ]
    try:
        for server in servers:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise SystemExit("the simulators did not start")
        total = args.per_site * len(BASES)
        print(f"{total} pymodbus devices over {len(BASES)} sites: {', '.join(networks)}")
        emb_s, emb_obs = embedded(networks, tag)
        print(
            f"embedded: {emb_s:.2f} s, {emb_obs} modbus observations, {emb_obs / emb_s:.0f} obs/s"
        )
        with tempfile.TemporaryDirectory() as tmp:
            dist_s, dist_obs, span_s = distributed(networks, tag, args.chunk, Path(tmp))
        print(
            f"distributed (4 sensors): {dist_s:.2f} s, {dist_obs} modbus observations, "
            f"{dist_obs / dist_s:.0f} obs/s end to end, {dist_obs / span_s:.0f} obs/s "
            f"ingested (first to last part: {span_s:.2f} s)"
        )
        print(f"wall-time ratio embedded/distributed: {emb_s / dist_s:.2f}")
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
