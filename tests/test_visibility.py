"""Organisation scoping: an organisation sees its own rows, a global caller every row, and a row
of another organisation reads exactly as a row that does not exist."""

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cybermission.errors import NotFoundError
from cybermission.inventory.models import Device
from cybermission.inventory.queries import get_device_or_raise
from cybermission.sites.models import Organization
from cybermission.visibility import sees, visible


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
                    found = get_device_or_raise(
                        session=session, device_id=device.id, visible_to=visible_to
                    )
                    assert found.id == device.id
                    continue
                with pytest.raises(NotFoundError) as hidden:
                    get_device_or_raise(session=session, device_id=device.id, visible_to=visible_to)
                # Hidden and absent read the same: nothing tells that the id exists elsewhere.
                assert str(hidden.value) == f"no device with id {device.id!r}"
