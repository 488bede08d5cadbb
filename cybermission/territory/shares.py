"""What organisations share with the coordinator: recorded (who, when), revocable, and read as
one SQL condition on devices (:func:`disclosed_devices`)."""

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, false, func, or_
from sqlmodel import Session, col, select

from cybermission.db import utcnow
from cybermission.errors import ConflictError, ValidationError
from cybermission.findings.models import Finding
from cybermission.findings.service import ACTIVE_STATUSES
from cybermission.inventory.models import Device, Service
from cybermission.inventory.queries import list_addresses_by_device, list_services_by_device
from cybermission.territory.models import CoordinatorShare, ShareScope
from cybermission.visibility import get_owned_or_raise

logger = logging.getLogger(__name__)

MAX_CLASSES: Final = 20
# A device class is named by a protocol the inventory records (services.protocol).
_CLASS_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,49}$")


@dataclass(frozen=True, slots=True)
class Disclosure:
    """The live shares of the territory: organisations sharing everything, and the device
    classes the others share."""

    full: frozenset[str] = frozenset()
    classes: dict[str, frozenset[str]] = field(default_factory=dict)

    def level(self, organization_id: str) -> ShareScope | None:
        if organization_id in self.full:
            return ShareScope.FULL
        return ShareScope.DEVICE_CLASSES if organization_id in self.classes else None


def create_share(
    session: Session,
    *,
    organization_id: str,
    scope: ShareScope,
    device_classes: Sequence[str],
    created_by: str,
) -> CoordinatorShare:
    """Record that an organisation shows the coordinator more; a full share names no class."""
    classes = sorted({c.strip().lower() for c in device_classes})
    if scope is ShareScope.FULL and classes:
        raise ValidationError("device_classes: a full share names no class (it shares all)")
    if scope is ShareScope.DEVICE_CLASSES:
        if not classes:
            raise ValidationError("device_classes: name at least one protocol (modbus, bacnet)")
        if len(classes) > MAX_CLASSES:
            raise ValidationError(f"device_classes: at most {MAX_CLASSES}")
        bad = [c for c in classes if not _CLASS_RE.match(c)]
        if bad:
            raise ValidationError(
                f"device_classes: {bad[0]!r} is not a protocol name (lower-case letters, digits, "
                "'-', '_' or '.', at most 50)"
            )
    live = list_shares(session, organization_id=organization_id, live_only=True)
    if any(s.scope is scope and s.device_classes == classes for s in live):
        raise ConflictError("this organisation already shares exactly that with the coordinator")
    share = CoordinatorShare(
        organization_id=organization_id,
        scope=scope,
        device_classes=classes,
        created_by=created_by[:100],
    )
    session.add(share)
    session.flush()
    logger.info(
        "coordinator share created",
        extra={"organization_id": organization_id, "scope": str(scope), "share_id": share.id},
    )
    return share


def list_shares(
    session: Session, *, organization_id: str | None, live_only: bool = False
) -> list[CoordinatorShare]:
    """Shares of one organisation (None: of every one), oldest first; revoked ones too unless
    ``live_only``."""
    query = select(CoordinatorShare)
    if organization_id is not None:
        query = query.where(CoordinatorShare.organization_id == organization_id)
    if live_only:
        query = query.where(col(CoordinatorShare.revoked_at).is_(None))
    query = query.order_by(col(CoordinatorShare.created_at), col(CoordinatorShare.id))
    return list(session.exec(query).all())


def revoke_share(
    session: Session, *, share_id: str, organization_id: str | None, revoked_by: str
) -> CoordinatorShare:
    """Stop sharing at once; revoking twice keeps the first revocation."""
    share = get_owned_or_raise(
        session, CoordinatorShare, share_id, visible_to=organization_id, what="share"
    )
    if share.revoked_at is None:
        share.revoked_at = utcnow()
        share.revoked_by = revoked_by[:100]
        session.add(share)
        session.flush()
        logger.info("coordinator share revoked", extra={"share_id": share.id})
    return share


def load_disclosure(session: Session) -> Disclosure:
    full: set[str] = set()
    classes: dict[str, set[str]] = {}
    for share in list_shares(session, organization_id=None, live_only=True):
        if share.scope is ShareScope.FULL:
            full.add(share.organization_id)
        else:
            classes.setdefault(share.organization_id, set()).update(share.device_classes)
    return Disclosure(
        full=frozenset(full),
        classes={org: frozenset(c) for org, c in classes.items() if org not in full},
    )


def disclosed_devices(disclosure: Disclosure) -> ColumnElement[bool]:
    """A WHERE condition true for the devices their organisation shares with the coordinator."""
    terms: list[ColumnElement[bool]] = []
    if disclosure.full:
        terms.append(col(Device.organization_id).in_(sorted(disclosure.full)))
    for organization_id, classes in sorted(disclosure.classes.items()):
        speaking: Any = select(Service.device_id).where(col(Service.protocol).in_(sorted(classes)))
        terms.append(
            and_(col(Device.organization_id) == organization_id, col(Device.id).in_(speaking))
        )
    return or_(*terms) if terms else false()


@dataclass(frozen=True, slots=True)
class SharedDevice:
    device: Device
    addresses: list[str]
    protocols: list[str]
    open_findings: int


def list_shared_devices(
    session: Session, *, organization_id: str, limit: int = 1000
) -> list[SharedDevice]:
    """The devices of one organisation that it shares with the coordinator (none: empty)."""
    disclosure = load_disclosure(session)
    if disclosure.level(organization_id) is None:
        return []
    query = (
        select(Device)
        .where(col(Device.organization_id) == organization_id, disclosed_devices(disclosure))
        .order_by(col(Device.id))
        .limit(limit)
    )
    devices = list(session.exec(query).all())
    ids = [d.id for d in devices]
    addresses = list_addresses_by_device(session=session, device_ids=ids)
    services = list_services_by_device(session=session, device_ids=ids)
    counts: dict[str, int] = dict(
        session.exec(
            select(Finding.device_id, func.count())
            .where(col(Finding.device_id).in_(ids), col(Finding.status).in_(ACTIVE_STATUSES))
            .group_by(col(Finding.device_id))
        ).all()
        if ids
        else []
    )
    return [
        SharedDevice(
            device=d,
            addresses=addresses[d.id],
            protocols=sorted({s.protocol for s in services[d.id]}),
            open_findings=counts.get(d.id, 0),
        )
        for d in devices
    ]
