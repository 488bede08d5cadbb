"""Scan runs in the store: creation (validated against the scope first) and reads."""

from sqlmodel import Session, col, select

from cybermission.config import Settings
from cybermission.errors import NotFoundError, ValidationError
from cybermission.guard import ScopeGuard
from cybermission.probes import Transport, resolve_ports
from cybermission.scans.models import ScanRun
from cybermission.scans.targets import count_targets

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
) -> ScanRun:
    """Validate targets against the scope and store a queued run; nothing is stored on refusal.

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
        hosts_total=total,
    )
    session.add(run)
    session.flush()
    return run


def get_scan_run(session: Session, scan_run_id: str) -> ScanRun | None:
    return session.get(ScanRun, scan_run_id)


def get_scan_run_or_raise(session: Session, scan_run_id: str) -> ScanRun:
    run = session.get(ScanRun, scan_run_id)
    if run is None:
        raise NotFoundError(f"no scan run with id {scan_run_id!r}")
    return run


def list_scan_runs(session: Session, *, limit: int = 50) -> list[ScanRun]:
    query = select(ScanRun).order_by(col(ScanRun.created_at).desc()).limit(limit)
    return list(session.exec(query).all())
