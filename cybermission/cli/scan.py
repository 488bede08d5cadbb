"""``cybermission scan TARGETS``: scan now, progress on stderr, the report on stdout.

Exit status: 0 done (succeeded or partial); 1 the scan failed (its reason on stderr and in the
report); 2 refused (out of scope, bad targets) or no store; 3 cancelled from another process, or
interrupted otherwise than by a signal to this one; 128+N stopped by signal N (130 for SIGINT,
143 for SIGTERM): the run ends ``interrupted`` with what it had done, and a second signal stops
at once.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cybermission.cli.report import check_format, show_report
from cybermission.cli.runtime import err, fail, logs_through, open_store, start
from cybermission.errors import CybermissionError

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine

    from cybermission.config import Settings
    from cybermission.scans.probing import ProgressCallback, ScanProgress


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
    output: Annotated[
        str, typer.Option("--format", help="table, json (indented) or jsonl (one line)")
    ] = "table",
    engine_name: Annotated[
        str | None, typer.Option("--engine", help="sweep (built in) or nmap (optional extra)")
    ] = None,
) -> None:
    """Scan now: progress on stderr, the result on stdout."""
    with collector_paused():
        _scan(targets, ports, udp_ports, output, engine_name)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection while the command starts: :func:`execute_and_report` freezes what
    start-up made and resumes the collector for the run.

    Importing the store, the pipeline and the probes makes ~160,000 objects that live as long as
    the process; the collector walked them again and again while they were made (0.1-0.2 s of a
    scan's start-up CPU, loaded machine, issue 12) and found ~1,200 unreachable ones, which are
    frozen with the rest.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _scan(
    targets: list[str],
    ports: str | None,
    udp_ports: str | None,
    output: str,
    engine_name: str | None,
) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from cybermission.db import session_scope
    from cybermission.scans.ownership import reap_before_starting, this_process
    from cybermission.scans.scopes import build_guard
    from cybermission.scans.service import create_scan_run
    from cybermission.store_faults import describe_store_error, retry_transient
    from cybermission.store_links import store_deadline

    check_format(output)
    settings = start()
    if engine_name:
        settings = settings.model_copy(update={"discovery_engine": engine_name})
    engine = open_run_store(settings)
    retry_s = settings.runs.store_retry_s

    def create() -> tuple[str, int]:
        with store_deadline(engine, "create a run"), session_scope(engine) as session:
            run = create_scan_run(
                session,
                guard=build_guard(session, settings),
                targets=targets,
                ports=parse_ports(ports),
                udp_ports=[] if udp_ports == "none" else parse_ports(udp_ports),
                settings=settings,
                requested_by="cli",
                owner=this_process(),
            )
            return run.id, run.hosts_total

    try:
        # Runs a killed scan or service left behind are closed before this one starts.
        reap_before_starting(engine, settings.runs)
        run_id, total = retry_transient(create, horizon_s=retry_s, what="create a run")
    except CybermissionError as exc:
        raise fail(exc) from exc
    except SQLAlchemyError as exc:
        err().print(f"[bold red]error:[/] the store failed: {describe_store_error(exc)}")
        raise typer.Exit(code=1) from exc
    execute_and_report(engine, settings, run_id, total=total, output=output)


def open_run_store(settings: "Settings") -> "Engine":
    """The store of a command that executes a run here (``scan``, ``scans resume``): its schema
    checked, and only the tables a run reads or writes, and those their keys name, on the
    metadata (``open_store(every_table=False)``)."""
    from cybermission.scans import pipeline  # noqa: F401  (the run's tables)

    return open_store(settings, every_table=False)


@contextmanager
def progress_bar(console: "Console", total: int) -> "Iterator[ProgressCallback]":
    """The run's progress bar on a terminal; off one, a callback that shows nothing.

    A transient bar shows nothing on a file or pipe, yet its refresh thread built the table ten
    times a second against the probing loop (1.4% of a run's GIL samples), and importing
    ``rich.progress`` alone cost a scan's start-up ~40 ms (issue 12): neither happens off a
    terminal.
    """
    if not console.is_terminal:
        yield lambda _p: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[live]} live, {task.fields[obs]} observations"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("scanning", total=total, live=0, obs=0)

        def show(p: "ScanProgress") -> None:
            bar.update(task, completed=p.hosts_swept, live=p.hosts_live, obs=p.observations)

        yield show


def execute_and_report(
    engine: "Engine", settings: "Settings", run_id: str, *, total: int, output: str
) -> None:
    """Execute a stored run with a progress bar on stderr, print its report, and exit with the
    status the module docstring lists (``scan`` and ``scans resume`` end the same way)."""
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from cybermission.db import session_scope
    from cybermission.scans.models import ScanStatus
    from cybermission.scans.report import build_scan_report
    from cybermission.store_faults import describe_store_error, retry_transient
    from cybermission.store_links import store_deadline

    retry_s = settings.runs.store_retry_s
    console = err()
    with progress_bar(console, total) as show, logs_through(console):
        # What start-up built (modules, the ORM's mappers, probes, rules) lives as long as the
        # process: out of the collector's sight, each full collection of the run walks only
        # what the run made (issue 12: a 1,024-device lab run's collections took 4.8 s of wall
        # time on a loaded machine, 2.7 s frozen; whole-command CPU 0.93x, median of 3 pairs).
        gc.freeze()
        gc.enable()  # paused while ``scan`` started (collector_paused)
        stopped_by = asyncio.run(_scan_until_stopped(engine, settings, run_id, show))

    def read_report() -> dict[str, Any]:
        with store_deadline(engine, "read the report"), session_scope(engine) as session:
            return build_scan_report(session, run_id)

    try:
        report = retry_transient(read_report, horizon_s=retry_s, what="read the report")
    except SQLAlchemyError as exc:
        err().print(f"[bold red]error:[/] the store failed: {describe_store_error(exc)}")
        raise typer.Exit(code=1) from exc
    finally:
        # Close the store now, not at exit: the engine is frozen above and frozen objects are
        # never finalised, so its SQLite connections stayed open and the write-ahead log was
        # never folded into the database file (a copy of the file alone lacked the run).
        engine.dispose()
    show_report(report, output)
    status = ScanStatus(report["scan"]["status"])
    if stopped_by is not None:
        raise typer.Exit(code=128 + stopped_by)
    if status is ScanStatus.FAILED:
        err().print(f"[bold red]{report['scan'].get('reason') or 'failed: see errors'}[/]")
        raise typer.Exit(code=1)
    if status in (ScanStatus.CANCELLED, ScanStatus.INTERRUPTED):
        err().print(f"{status}: {report['scan'].get('reason')}")
        raise typer.Exit(code=3)


async def _scan_until_stopped(
    engine: "Engine", settings: "Settings", run_id: str, show: "ProgressCallback"
) -> int | None:
    """Execute the run with SIGINT and SIGTERM stopping it cleanly; the signal that did, if any.

    The first signal ends the run ``interrupted`` (what was stored stays, counts recorded); the
    handler is then removed, so a second one acts as usual (stops the process at once).
    """
    import asyncio
    import signal

    from sqlalchemy.exc import SQLAlchemyError

    from cybermission.scans.control import RunControl
    from cybermission.scans.models import ScanStatus
    from cybermission.scans.pipeline import execute_scan
    from cybermission.store_faults import describe_store_error

    control = RunControl()
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        for handled in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(handled)
        name = signal.Signals(signum).name
        control.request_stop(ScanStatus.INTERRUPTED, f"interrupted: {name} received")

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await execute_scan(
            engine=engine, settings=settings, scan_run_id=run_id, progress=show, control=control
        )
    except SQLAlchemyError as exc:
        # The end of the run itself could not be written (disk full, store gone): it stays
        # "running" under this process, and the next start of any cybermission closes it.
        err().print(
            "[bold red]error:[/] the run could not be recorded: "
            f"{describe_store_error(exc)}; the next cybermission start marks it interrupted"
        )
        raise typer.Exit(code=1) from exc
    return received[0] if received else None
