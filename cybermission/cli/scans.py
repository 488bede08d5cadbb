"""``cybermission scans cancel ID``: stop a scan run whichever process executes it;
``cybermission scans resume ID``: finish an interrupted run where it stopped.

``cancel`` exit status: 0 the run is stopped (cancelled, or it ended meanwhile); 1 it had already
finished, its owner did not stop within ``--wait-s`` (the request stays recorded), or the store
failed or stopped answering (after ``store.stall_s``); 2 no such run. ``resume`` exits as
``cybermission scan`` does, and 2 for no such run or one that is not interrupted (still running
in a live process, or finished otherwise).
"""

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cybermission.scans.models import ScanRun

from cybermission.cli.runtime import command_group, err, fail, open_store, start

app = command_group("Scan runs of any process: cancel, resume.")


@app.command("cancel")
def scans_cancel(
    scan_run_id: Annotated[str, typer.Argument(help="The run's id.")],
    wait_s: Annotated[
        float, typer.Option(help="How long to wait for its owner to stop (0: do not wait).")
    ] = 60.0,
    by: Annotated[str, typer.Option(help="Who asks, for the record.")] = "cli",
) -> None:
    """Cancel a run: at once when no live process executes it, else at its owner's heartbeat."""
    from sqlalchemy.exc import SQLAlchemyError

    from cybermission.db import session_scope
    from cybermission.errors import NotFoundError
    from cybermission.scans.ownership import cancel_unowned
    from cybermission.scans.service import get_scan_run_or_raise
    from cybermission.store_faults import describe_store_error, retry_transient
    from cybermission.store_links import store_deadline

    settings = start()
    engine = open_store(settings)
    retry_s = settings.runs.store_retry_s

    def read() -> "ScanRun":
        with store_deadline(engine, "read a run to cancel"), session_scope(engine) as session:
            return get_scan_run_or_raise(session=session, scan_run_id=scan_run_id, visible_to=None)

    try:
        run = retry_transient(read, horizon_s=retry_s, what="read a run to cancel")
        if run.finished_at is not None:
            err().print(f"scan run {scan_run_id} already finished ({run.status})")
            raise typer.Exit(code=1)
        closed = cancel_unowned(engine, scan_run_id, by=by, lease_s=settings.runs.lease_s)
        if closed is None:
            # A site sensors' run has no owner process: the centre (`cybermission central`)
            # ends it.
            owner = f"{run.owner_host}:{run.owner_pid}" if run.owner_host else "the centre"
            err().print(f"cancel requested; waiting for its owner {owner}")
            closed = _wait_finished(
                engine,
                scan_run_id,
                wait_s=wait_s,
                poll_s=settings.runs.heartbeat_s,
                retry_s=retry_s,
            )
    except NotFoundError as exc:
        raise fail(exc) from exc
    except SQLAlchemyError as exc:
        err().print(f"[bold red]error:[/] the store failed: {describe_store_error(exc)}")
        raise typer.Exit(code=1) from exc
    if closed is None or closed.finished_at is None:
        err().print("its owner has not stopped yet; the request stays recorded")
        raise typer.Exit(code=1)
    err().print(f"scan run {scan_run_id}: {closed.status} ({closed.reason or 'ended'})")


@app.command("resume")
def scans_resume(
    scan_run_id: Annotated[str, typer.Argument(help="The interrupted run's id.")],
    output: Annotated[
        str, typer.Option("--format", help="table, json (indented) or jsonl (one line)")
    ] = "table",
) -> None:
    """Resume an interrupted run here: only the hosts it had not finished are scanned, and its
    result is the one the run would have had uninterrupted."""
    from cybermission.cli.scan import collector_paused

    with collector_paused():  # started as ``scan`` starts
        _resume(scan_run_id, output)


def _resume(scan_run_id: str, output: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from cybermission.cli.report import check_format
    from cybermission.cli.scan import execute_and_report, open_run_store
    from cybermission.errors import CybermissionError
    from cybermission.scans.ownership import this_process
    from cybermission.scans.resume import reopen_run
    from cybermission.store_faults import describe_store_error, retry_transient

    check_format(output)
    settings = start()
    engine = open_run_store(settings)
    try:
        run = retry_transient(
            lambda: reopen_run(
                engine,
                scan_run_id,
                by="cli",
                lease_s=settings.runs.lease_s,
                owner=this_process(),
            ),
            horizon_s=settings.runs.store_retry_s,
            what="reopen a run",
        )
    except CybermissionError as exc:
        raise fail(exc) from exc
    except SQLAlchemyError as exc:
        err().print(f"[bold red]error:[/] the store failed: {describe_store_error(exc)}")
        raise typer.Exit(code=1) from exc
    err().print(f"resuming scan run {scan_run_id} (resume {run.resumes})")
    execute_and_report(engine, settings, scan_run_id, total=run.hosts_total, output=output)


def _wait_finished(
    engine: "Engine", scan_run_id: str, *, wait_s: float, poll_s: float, retry_s: float
) -> "ScanRun | None":
    """The run once finished, polled until ``wait_s`` has passed; its latest row otherwise.
    Each poll is under the stall deadline (``store_links``): a store gone silent fails the
    wait with a lost connection (transient errors retried for ``retry_s``), never hangs it."""
    import time

    from cybermission.db import session_scope
    from cybermission.scans.models import ScanRun
    from cybermission.store_faults import retry_transient
    from cybermission.store_links import store_deadline

    def poll() -> ScanRun | None:
        with store_deadline(engine, "wait for a run to end"), session_scope(engine) as session:
            return session.get(ScanRun, scan_run_id)

    deadline = time.monotonic() + wait_s
    while True:
        run = retry_transient(poll, horizon_s=retry_s, what="wait for a run to end")
        if run is None or run.finished_at is not None or time.monotonic() >= deadline:
            return run
        time.sleep(min(1.0, poll_s / 2))
