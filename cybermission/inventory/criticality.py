"""Asset criticality, set by people and kept across rescans (reconciliation never writes it)."""

import logging

from sqlmodel import Session

from cybermission.errors import NotFoundError, ValidationError
from cybermission.inventory.models import Criticality, Device

logger = logging.getLogger(__name__)


def set_criticality(
    session: Session, *, device_id: str, criticality: Criticality | str | None
) -> Device:
    """Set (or clear, with None) how much a device matters; the score weighs its findings by it.

    The next scan's findings carry the new weight; rescans never overwrite it.
    """
    level: Criticality | None
    try:
        level = None if criticality is None else Criticality(criticality)
    except ValueError as exc:
        allowed = ", ".join(c.value for c in Criticality)
        raise ValidationError(
            f"criticality: expected one of {allowed}, got {criticality!r}"
        ) from exc
    device = session.get(Device, device_id)
    if device is None:
        raise NotFoundError(f"no device with id {device_id!r}")
    device.criticality = level
    session.add(device)
    session.flush()
    logger.info(
        "criticality set",
        extra={"device_id": device_id, "criticality": level.value if level else None},
    )
    return device
