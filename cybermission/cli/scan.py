"""``cybermission scan TARGETS``: scan now, progress on stderr, the report on stdout.

Exit status: 0 done; 1 the scan failed; 2 refused (out of scope, bad targets) or no store.
"""

from typing import Annotated

import typer

from cybermission.cli.report import check_format, show_report
from cybermission.cli.runtime import err, fail, open_store, start
from cybermission.errors import CybermissionError


def parse_ports(text: str | None) -> list[int] | None:
    """``502,102,20000-20010`` as a list of ports; None when not given."""
    if not text:
        return None
    ports: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise typer.BadParameter(
                f"{part!r} is not a port or a port range", param_hint="--ports"
            )
        ports.extend(range(int(low), int(high or low) + 1))
    return ports


def scan(
    targets: Annotated[list[str], typer.Argument(help="Addresses, CIDRs, ranges, names.")],
    ports: Annotated[str | None, typer.Option(help="e.g. 502,102,20000-20010")] = None,
    udp_ports: Annotated[
        str | None, typer.Option(help="UDP ports to probe on every target; 'none' for none.")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="json or table")] = "table",
    engine_name: Annotated[
        str | None, typer.Option("--engine", help="sweep (built in) or nmap (optional extra)")
    ] = None,
) -> None:
    """Scan now: progress on stderr, the result on stdout."""
    import asyncio

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from cybermission.db import session_scope
    from cybermission.scans.pipeline import execute_scan
    from cybermission.scans.probing import ScanProgress
    from cybermission.scans.report import build_scan_report
    from cybermission.scans.scopes import build_guard
    from cybermission.scans.service import create_scan_run

    check_format(output)
    settings = start()
    if engine_name:
        settings = settings.model_copy(update={"discovery_engine": engine_name})
    engine = open_store(settings)
    try:
        with session_scope(engine) as session:
            run = create_scan_run(
                session,
                guard=build_guard(session, settings),
                targets=targets,
                ports=parse_ports(ports),
                udp_ports=[] if udp_ports == "none" else parse_ports(udp_ports),
                settings=settings,
                requested_by="cli",
            )
            run_id, total = run.id, run.hosts_total
    except CybermissionError as exc:
        raise fail(exc) from exc
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[live]} live, {task.fields[obs]} observations"),
        TimeElapsedColumn(),
        console=err(),
        transient=True,
    ) as bar:
        task = bar.add_task("scanning", total=total, live=0, obs=0)

        def show(p: ScanProgress) -> None:
            bar.update(task, completed=p.hosts_swept, live=p.hosts_live, obs=p.observations)

        asyncio.run(
            execute_scan(engine=engine, settings=settings, scan_run_id=run_id, progress=show)
        )
    with session_scope(engine) as session:
        report = build_scan_report(session, run_id)
    show_report(report, output)
    if report["scan"]["status"] == "failed":
        raise typer.Exit(code=1)
