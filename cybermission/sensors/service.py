"""The central side of the distributed mode: sites, enrolment, chunks, relay, reaper, ingestion.

A distributed scan is written in one transaction: the run, its chunks and (the chunk rows being
their own outbox) what the relay must publish. Results come back in parts that
:mod:`cybermission.sensors.ingestion` applies once; the run ends here when its chunks are done.
"""

import ipaddress
import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.guard import ScopeGuard
from cybermission.probes import SentRequests
from cybermission.scans.models import ScanRun, ScanStatus, Scope
from cybermission.scans.probing import ScanProgress
from cybermission.scans.recording import RunState, finish_run
from cybermission.scans.scopes import scope_guard
from cybermission.scans.service import create_scan_run
from cybermission.scans.targets import expand_targets
from cybermission.sensors.models import (
    Chunk,
    ChunkState,
    RejectedPart,
    Sensor,
    SensorState,
)
from cybermission.sensors.topology import (
    Management,
    new_password,
    sensor_permissions,
    site_vhost,
    vhost_url,
)
from cybermission.sites.models import Organization, Site
from cybermission.sites.service import get_site_or_raise

logger = logging.getLogger(__name__)

# --- sites and sensors (sites themselves are made by cybermission.sites.service) -----------------


def site_networks(session: Session, site_id: str) -> list[str]:
    scopes = session.exec(select(Scope).where(Scope.site_id == site_id)).all()
    return [cidr for s in scopes for cidr in s.cidrs]


def site_guard(session: Session, site: Site) -> ScopeGuard:
    """Only the site's own scopes: a site's run can never reach another site's networks."""
    scopes = session.exec(select(Scope).where(Scope.site_id == site.id)).all()
    if not scopes:
        raise ValidationError(f"site: {site.slug!r} has no authorised networks")
    return scope_guard(scopes)


def enroll_sensor(session: Session, settings: Settings, *, slug: str) -> dict[str, Any]:
    """Create a pending sensor and its broker user; return the one-time bundle.

    ``slug`` names the site (``ORGANISATION/SLUG`` where two organisations use the slug). The
    password exists only in the bundle (the broker keeps its hash); the user has no permission
    until :func:`approve_sensor`, so a new sensor cannot even open its vhost.
    """
    site = get_site_or_raise(session, slug=slug)
    sensor = Sensor(site_id=site.id, username="", networks=site_networks(session, site.id))
    # Broker users are one namespace for every organisation: the sensor's id keeps them apart.
    sensor.username = f"sensor.{site.slug}.{sensor.id}"
    password = new_password()
    with Management(settings.broker) as mgmt:
        mgmt.ensure_site(site.id)
        mgmt.create_user(sensor.username, password)
    session.add(sensor)
    session.flush()
    ca = settings.broker.ca_file.read_text() if settings.broker.ca_file else None
    return {
        "sensor_id": sensor.id,
        "site": site.slug,
        "broker_url": vhost_url(
            settings.broker.public_url,
            site_vhost(site.id),
            username=sensor.username,
            password=password,
        ),
        "ca_pem": ca,
        "networks": sensor.networks,
    }


def list_sensors(session: Session) -> list[tuple[Sensor, Site, str]]:
    """Every sensor with its site and the site's organisation slug, by organisation, site and
    enrolment (the operator's view: which sensor to approve, re-enrol or revoke)."""
    rows = session.exec(
        select(Sensor, Site, Organization.slug)
        .join(Site, col(Site.id) == col(Sensor.site_id))
        .join(Organization, col(Organization.id) == col(Site.organization_id))
        .order_by(col(Organization.slug), col(Site.slug), col(Sensor.created_at), col(Sensor.id))
    ).all()
    return [(sensor, site, organization) for sensor, site, organization in rows]


def _sensor_or_raise(session: Session, sensor_id: str) -> tuple[Sensor, Site]:
    sensor = session.get(Sensor, sensor_id)
    if sensor is None:
        raise NotFoundError(f"no sensor with id {sensor_id!r}")
    site = session.get(Site, sensor.site_id)
    if site is None:
        raise NotFoundError(f"sensor {sensor_id!r} has no site")
    return sensor, site


def approve_sensor(session: Session, settings: Settings, *, sensor_id: str) -> Sensor:
    sensor, site = _sensor_or_raise(session, sensor_id)
    if sensor.state is SensorState.REVOKED:
        raise ConflictError(f"sensor {sensor_id!r} is revoked; enrol a new one")
    with Management(settings.broker) as mgmt:
        mgmt.ensure_sensor(site.id, sensor.id)
        mgmt.set_permissions(site_vhost(site.id), sensor.username, sensor_permissions(sensor.id))
    sensor.state = SensorState.APPROVED
    sensor.approved_at = utcnow()
    return sensor


def revoke_sensor(session: Session, settings: Settings, *, sensor_id: str) -> Sensor:
    """Delete the sensor's broker user (no reconnect) and close its open connections."""
    sensor, site = _sensor_or_raise(session, sensor_id)
    with Management(settings.broker) as mgmt:
        mgmt.clear_permissions(site_vhost(site.id), sensor.username)
        mgmt.delete_user(sensor.username)
        mgmt.close_connections(sensor.username)
        mgmt.delete_sensor(site.id, sensor.id)
    sensor.state = SensorState.REVOKED
    sensor.revoked_at = utcnow()
    return sensor


def provision_sensors(session: Session, settings: Settings) -> int:
    """Give every approved sensor its notice queue and current permissions (idempotent): the
    centre's start-up, so sensors approved by an older release receive cancel notices too."""
    rows = session.exec(select(Sensor).where(Sensor.state == SensorState.APPROVED)).all()
    if not rows:
        return 0
    with Management(settings.broker) as mgmt:
        for sensor in rows:
            mgmt.ensure_sensor(sensor.site_id, sensor.id)
            mgmt.set_permissions(
                site_vhost(sensor.site_id), sensor.username, sensor_permissions(sensor.id)
            )
    return len(rows)


# --- planning ----------------------------------------------------------------------------------


def _ranges(addresses: Iterable[str]) -> list[str]:
    """Consecutive addresses folded into ``a-b`` ranges: chunk messages stay small."""
    out: list[str] = []
    first: Any = None
    last: Any = None
    for text in addresses:
        address = ipaddress.ip_address(text)
        if last is not None and address.version == last.version and int(address) == int(last) + 1:
            last = address
            continue
        if first is not None:
            out.append(str(first) if first == last else f"{first}-{last}")
        first = last = address
    if first is not None:
        out.append(str(first) if first == last else f"{first}-{last}")
    return out


def chunk_hosts(settings: Settings, ports: int) -> int:
    """Hosts per chunk so one takes about ``chunk_target_s`` at the site's pacing."""
    pacing = settings.pacing.effective()
    per_s = pacing.global_rate_per_s / max(1, ports)
    return max(1, min(settings.broker.chunk_max_hosts, int(settings.broker.chunk_target_s * per_s)))


def _batched(items: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def create_site_scan(
    session: Session,
    settings: Settings,
    *,
    slug: str,
    targets: Sequence[str] | None = None,
    ports: list[int] | None = None,
    udp_ports: list[int] | None = None,
    not_after: datetime | None = None,
    hosts_per_chunk: int | None = None,
    requested_by: str = "cli",
) -> ScanRun:
    """Write a site's run and its chunks (each its own outbox entry) in the caller's transaction.

    ``slug`` names the site (``ORGANISATION/SLUG`` where two organisations use the slug). Targets
    default to the site's networks and must lie inside them. ``not_after`` is the end of the scan
    window: a chunk still queued then is skipped, never probed late.
    """
    return _write_site_scan(
        session,
        settings,
        get_site_or_raise(session, slug=slug),
        targets=targets,
        ports=ports,
        udp_ports=udp_ports,
        not_after=not_after,
        hosts_per_chunk=hosts_per_chunk,
        requested_by=requested_by,
    )


def _write_site_scan(
    session: Session,
    settings: Settings,
    site: Site,
    *,
    targets: Sequence[str] | None,
    ports: list[int] | None,
    udp_ports: list[int] | None,
    not_after: datetime | None,
    hosts_per_chunk: int | None,
    requested_by: str,
) -> ScanRun:
    guard = site_guard(session, site)
    wanted = list(targets) if targets else site_networks(session, site.id)
    run = create_scan_run(
        session,
        guard=guard,
        targets=wanted,
        ports=ports,
        settings=settings,
        requested_by=requested_by,
        udp_ports=udp_ports,
    )
    run.organization_id = site.organization_id
    run.site_id = site.id
    deadline = not_after or utcnow() + timedelta(seconds=settings.broker.window_s)
    size = hosts_per_chunk or chunk_hosts(settings, len(run.ports))
    for seq, batch in enumerate(_batched(expand_targets(wanted, guard=guard), size)):
        session.add(
            Chunk(
                scan_run_id=run.id,
                site_id=site.id,
                seq=seq,
                targets=_ranges(batch),
                hosts=len(batch),
                not_after=deadline,
            )
        )
    session.flush()
    return run


def plan_site_scan(
    session: Session,
    settings: Settings,
    *,
    site_id: str,
    targets: list[str],
    ports: list[int] | None,
    not_after: datetime | None,
    requested_by: str,
) -> ScanRun | None:
    """The scheduler's :class:`cybermission.scans.schedules.SitePlanner` in the distributed mode.

    A site with an approved sensor scans there (chunks, dispatched by the relay); a site without
    one returns None and the embedded pipeline runs the scan as before.
    """
    site = session.get(Site, site_id)
    if site is None:
        return None
    sensor = session.exec(
        select(Sensor.id).where(Sensor.site_id == site_id, Sensor.state == SensorState.APPROVED)
    ).first()
    if sensor is None:
        return None
    return _write_site_scan(
        session,
        settings,
        site,
        targets=targets,
        ports=ports,
        udp_ports=None,
        not_after=not_after,
        hosts_per_chunk=None,
        requested_by=requested_by,
    )


# --- ingestion ---------------------------------------------------------------------------------


def finish_if_complete(engine: Engine, run_id: str) -> bool:
    """End the run once every chunk is terminal; True if this call ended it. A run with a
    cancel request, or with a cancelled chunk, ends ``cancelled`` with who asked."""
    with session_scope(engine) as session:
        run = session.get(ScanRun, run_id)
        if run is None or run.status.finished:
            return False
        chunks = session.exec(select(Chunk).where(Chunk.scan_run_id == run_id)).all()
        if any(not c.state.terminal for c in chunks):
            return False
        cancelled_by = run.cancel_requested_by or "someone"
        cancelled = run.cancel_requested_at is not None or any(
            c.state is ChunkState.CANCELLED for c in chunks
        )
    state = RunState.closing(run_id, _progress(chunks, run_id))
    for c in chunks:
        state.add_errors(c.errors)
        if c.state is ChunkState.SKIPPED:
            state.add_errors(
                [
                    {
                        "target": None,
                        "stage": "chunk",
                        "error": f"chunk {c.seq}: window closed, skipped",
                    }
                ]
            )
        state.sent.add(SentRequests.from_json(c.sent))
    reason: str | None = None
    if cancelled:
        status, reason = ScanStatus.CANCELLED, f"cancelled by {cancelled_by}"
        state.add_errors([{"target": None, "stage": "run", "error": reason}])
    elif any(c.state is ChunkState.FAILED for c in chunks) and not any(
        c.state is ChunkState.DONE for c in chunks
    ):
        status = ScanStatus.FAILED
    elif state.errors or any(c.state is not ChunkState.DONE for c in chunks):
        status = ScanStatus.PARTIAL
    else:
        status = ScanStatus.SUCCEEDED
    finish_run(engine, state, status, reason=reason)
    logger.info("distributed scan finished", extra={"scan_run_id": run_id, "status": str(status)})
    return True


def cancel_chunks(engine: Engine) -> list[str]:
    """Honour cancel requests of distributed runs: their unfinished chunks become ``cancelled``
    and the run ends ``cancelled`` (the centre executes these runs: no lease, no heartbeat). The
    unfinished chunks of a run closed otherwise (cancelled while queued) are cancelled too, so
    the relay never dispatches them. Returns the runs ended here.

    The chunk rows are locked: an ingestion committing a chunk's last part either commits first
    (its chunk stays done) or finds it cancelled and applies nothing (``ingestion.py``).
    """
    with session_scope(engine) as session:
        stopped = session.exec(
            select(Chunk)
            .join(ScanRun, col(ScanRun.id) == col(Chunk.scan_run_id))
            .where(col(Chunk.state).in_([ChunkState.PENDING, ChunkState.RUNNING]))
            .where(
                col(ScanRun.finished_at).is_not(None)
                | col(ScanRun.cancel_requested_at).is_not(None)
            )
            .with_for_update(of=Chunk)
        ).all()
        runs = {c.scan_run_id for c in stopped}
        now = utcnow()
        for chunk in stopped:
            chunk.state = ChunkState.CANCELLED
            chunk.finished_at = now
        # Runs whose chunks were all terminal already when the request came.
        runs |= set(
            session.exec(
                select(ScanRun.id)
                .join(Chunk, col(Chunk.scan_run_id) == col(ScanRun.id))
                .where(col(ScanRun.finished_at).is_(None))
                .where(col(ScanRun.cancel_requested_at).is_not(None))
            ).all()
        )
    if stopped:
        logger.warning("chunks cancelled", extra={"chunks": len(stopped), "runs": sorted(runs)})
    return [r for r in sorted(runs) if finish_if_complete(engine, r)]


def _progress(chunks: Sequence[Chunk], run_id: str) -> ScanProgress:
    return ScanProgress(
        scan_run_id=run_id,
        hosts_total=sum(c.hosts for c in chunks),
        hosts_swept=sum(c.hosts_swept for c in chunks),
        hosts_live=sum(c.hosts_live for c in chunks),
        open_ports=sum(c.open_ports for c in chunks),
        observations=sum(c.observations for c in chunks),
        findings=sum(c.findings for c in chunks),
    )


def count_rejections(session: Session) -> dict[tuple[str | None, str], int]:
    rows = session.exec(
        select(RejectedPart.site_id, RejectedPart.reason, func.count()).group_by(
            col(RejectedPart.site_id), col(RejectedPart.reason)
        )
    ).all()
    return {(site_id, str(reason)): int(n) for site_id, reason, n in rows}
