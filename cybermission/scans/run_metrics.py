"""Scan runs' monotonic metrics, counted in the transaction that starts or ends a run."""

from sqlmodel import Session

from cybermission.metric_counters import increment, observe
from cybermission.scans.models import ScanRun

SCANS_STARTED = "cybermission_scans_started"
SCANS_FINISHED = "cybermission_scans_finished"
SCAN_DURATION = "cybermission_scan_duration_seconds"
# Scan durations span seconds (a /28) to hours (a metropolis).
DURATION_BUCKETS_S = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


def count_run_started(session: Session) -> None:
    """A run went from queued to running (or an import began)."""
    increment(session, SCANS_STARTED)


def count_run_ended(session: Session, run: ScanRun) -> None:
    """``run`` just ended (its ``status`` and ``finished_at`` set): count it by status and, if it
    ever started, observe how long it ran. A run cancelled while queued has no duration."""
    increment(session, SCANS_FINISHED, {"status": str(run.status)})
    if run.started_at is not None and run.finished_at is not None:
        seconds = (run.finished_at - run.started_at).total_seconds()
        observe(session, SCAN_DURATION, seconds, bounds=DURATION_BUCKETS_S)
