"""A stored scan run executed now, as the CLI does it: the tests' one way to run a TCP scan."""

from collections.abc import Sequence

from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.config import Settings
from cybermission.guard import ScopeGuard
from cybermission.scans.control import RunControl
from cybermission.scans.models import ScanRun
from cybermission.scans.pipeline import execute_scan
from cybermission.scans.service import create_scan_run


async def scan_now(
    engine: Engine,
    settings: Settings,
    targets: list[str],
    *,
    guard: ScopeGuard,
    udp_ports: Sequence[int] | None = (),
    run_guard: ScopeGuard | None = None,
    control: RunControl | None = None,
) -> ScanRun:
    """Port 502 of ``targets`` and ``udp_ports`` (none by default; ``None``: the settings'),
    requested by "test" under ``guard``, executed under ``run_guard`` (default ``guard``: a scope
    that changed in between); the run's final row."""
    with Session(engine) as session:
        run = create_scan_run(
            session,
            guard=guard,
            targets=targets,
            ports=[502],
            udp_ports=None if udp_ports is None else list(udp_ports),
            settings=settings,
            requested_by="test",
        )
        session.commit()
        run_id = run.id
    return await execute_scan(
        engine=engine,
        settings=settings,
        scan_run_id=run_id,
        guard=run_guard or guard,
        control=control,
    )
