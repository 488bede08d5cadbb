"""Organisation scoping: an organisation sees its own rows, a global caller every row, and a row
of another organisation reads exactly as a row that does not exist."""

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cybermission.errors import NotFoundError
from cybermission.inventory.models import Device
from cybermission.sites.models import Organization
from cybermission.visibility import get_visible_or_raise, sees, visible


@pytest.mark.parametrize(
    ("visible_to", "row_organization", "seen"),
    [
        (None, "org-a", True),
        (None, None, True),
        ("org-a", "org-a", True),
        ("org-a", "org-b", False),
        ("org-a", None, False),  # rows of no organisation are for global callers only
    ],
)
def test_visibility_sees(visible_to: str | None, row_organization: str | None, seen: bool) -> None:
    assert sees(visible_to, row_organization) is seen


def _lookup(session: Session, device_id: str, visible_to: str | None) -> Device:
    return get_visible_or_raise(
        session,
        Device,
        device_id,
        visible_to=visible_to,
        what="device",
        organization_of=lambda d: d.organization_id,
    )


def test_visibility_filter_and_lookup_agree(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session:
        a, b = Organization(slug="a", name="A"), Organization(slug="b", name="B")
        session.add_all([a, b])
        session.flush()
        devices = {
            key: Device(name=key, organization_id=org)
            for key, org in (("a", a.id), ("b", b.id), ("none", None))
        }
        session.add_all(devices.values())
        session.commit()
        for visible_to, names in ((None, {"a", "b", "none"}), (a.id, {"a"})):
            query = select(Device).where(visible(col(Device.organization_id), visible_to))
            assert {d.name for d in session.exec(query)} == names
            for key, device in devices.items():
                if key in names:
                    assert _lookup(session, device.id, visible_to).id == device.id
                    continue
                with pytest.raises(NotFoundError) as hidden:
                    _lookup(session, device.id, visible_to)
                # Hidden and absent read the same: nothing tells that the id exists elsewhere.
                assert str(hidden.value) == f"no device with id {device.id!r}"
