"""Scan runs in the store: creation (validated against the scope first) and reads."""

from collections.abc import Collection

from sqlalchemy import func
from sqlmodel import Session, col, select

from cybermission.config import Settings
from cybermission.errors import ValidationError
from cybermission.guard import ScopeGuard
from cybermission.probes import Transport, resolve_ports
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.ownership import RunOwner, claim_run
from cybermission.scans.targets import count_targets
from cybermission.visibility import get_owned_or_raise, sees, visible

MAX_TARGET_SPECS = 1024


def validate_ports(ports: list[int]) -> list[int]:
    bad = [p for p in ports if not 1 <= p <= 65535]
    if bad:
        raise ValidationError(f"ports: {bad[:5]} are not TCP ports (1-65535)")
    if not ports:
        raise ValidationError("ports: give at least one port")
    return sorted(set(ports))


def create_scan_run(
    session: Session,
    *,
    guard: ScopeGuard,
    targets: list[str],
    ports: list[int] | None,
    settings: Settings,
    requested_by: str,
    udp_ports: list[int] | None = None,
    organization_id: str | None = None,
    owner: RunOwner | None = None,
) -> ScanRun:
    """Validate targets against the scope and store a queued run; nothing is stored on refusal.

    ``organization_id``: whose run it is (an organisation's caller sees only its own runs).
    ``owner``: the process that will execute it, when known now (a run created by a process
    that dies before starting it is then reaped instead of staying queued for ever).

    Raises ``ScopeError`` for any target outside the authorised scopes and ``ValidationError`` for
    malformed targets or ports, before any packet is sent.
    """
    if not targets:
        raise ValidationError("targets: give at least one address, network, range or name")
    if len(targets) > MAX_TARGET_SPECS:
        raise ValidationError(f"targets: at most {MAX_TARGET_SPECS} specs per scan")
    total = count_targets(targets, guard=guard)
    run = ScanRun(
        targets=list(targets),
        ports=validate_ports(
            list(ports) if ports else resolve_ports(settings.ports, Transport.TCP)
        ),
        # An empty list means "no UDP" here; None means the settings' default.
        udp_ports=(validate_ports(list(udp_ports)) if udp_ports else [])
        if udp_ports is not None
        else resolve_ports(settings.udp_ports, Transport.UDP),
        requested_by=requested_by[:100],
        organization_id=organization_id,
        hosts_total=total,
    )
    if owner is not None:
        claim_run(run, owner)
    session.add(run)
    session.flush()
    return run


def get_scan_run(*, session: Session, scan_run_id: str, visible_to: str | None) -> ScanRun | None:
    run = session.get(ScanRun, scan_run_id)
    return run if run is not None and sees(visible_to, run.organization_id) else None


def get_scan_run_or_raise(*, session: Session, scan_run_id: str, visible_to: str | None) -> ScanRun:
    return get_owned_or_raise(session, ScanRun, scan_run_id, visible_to=visible_to, what="scan run")


def list_scan_runs(
    *,
    session: Session,
    visible_to: str | None,
    statuses: Collection[ScanStatus] | None = None,
    limit: int = 50,
) -> list[ScanRun]:
    """The runs ``visible_to`` sees, newest first (ties by id), of ``statuses`` when given."""
    query = select(ScanRun).where(visible(col(ScanRun.organization_id), visible_to))
    if statuses is not None:
        query = query.where(col(ScanRun.status).in_(statuses))
    query = query.order_by(col(ScanRun.created_at).desc(), col(ScanRun.id)).limit(limit)
    return list(session.exec(query).all())


def count_scan_runs_by_status(*, session: Session) -> list[tuple[ScanStatus, int]]:
    """(status, runs) for every status that has any, across every organisation."""
    query = select(ScanRun.status, func.count()).group_by(col(ScanRun.status))
    return [(ScanStatus(status), count) for status, count in session.exec(query)]
