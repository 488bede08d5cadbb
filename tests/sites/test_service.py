"""Organisations, sites, zones and scopes placed in zones, on SQLite and PostgreSQL."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.inventory.criticality import set_criticality
from cybermission.inventory.models import Criticality, Device
from cybermission.scans.models import ScopeBase
from cybermission.scans.scopes import attach_scope, create_scope
from cybermission.sites.allocations import create_allocation
from cybermission.sites.models import ZoneExposure
from cybermission.sites.service import (
    create_organization,
    create_site,
    create_zone,
    get_organization_by_slug_or_raise,
    get_site_or_raise,
    list_zones,
)


def _metro(session: Session) -> str:
    return get_organization_by_slug_or_raise(session, slug="metro").id


def _plant_a(session: Session) -> str:
    return get_site_or_raise(session, slug="plant-a").id


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        org = create_organization(session, slug="metro", name="Metro water")
        site = create_site(session, organization_id=org.id, slug="plant-a", name="Plant A")
        create_allocation(session, organization_id=site.organization_id, cidr="127.50.0.0/16")
        session.commit()
        yield session


def test_service_zone_is_created_and_listed(session: Session) -> None:
    zone = create_zone(
        session, site_id=_plant_a(session), name="dmz", exposure="dmz", purdue_level=3
    )
    assert zone.exposure is ZoneExposure.DMZ
    assert [z.name for z in list_zones(session, site="plant-a")] == ["dmz"]


def test_service_zone_name_unique_per_site(session: Session) -> None:
    create_zone(session, site_id=_plant_a(session), name="cell-1")
    with pytest.raises(ConflictError, match="already has a zone 'cell-1'"):
        create_zone(session, site_id=_plant_a(session), name="cell-1")


@pytest.mark.parametrize(
    ("exposure", "level", "message"),
    [("outer-space", None, "exposure: expected one of"), ("control", 7, "purdue_level")],
)
def test_service_zone_rejects_bad_input(
    session: Session, exposure: str, level: int | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        create_zone(
            session, site_id=_plant_a(session), name="z", exposure=exposure, purdue_level=level
        )


def test_service_unknown_site_and_duplicate_slugs(session: Session) -> None:
    with pytest.raises(NotFoundError, match="no site with id 'nowhere'"):
        create_zone(session, site_id="nowhere", name="z")
    with pytest.raises(ConflictError):
        create_site(session, organization_id=_metro(session), slug="plant-a", name="again")
    with pytest.raises(ValidationError, match="slug"):
        create_organization(session, slug="bad slug!", name="x")


def test_service_scope_attached_to_a_zone(session: Session) -> None:
    zone = create_zone(
        session, site_id=_plant_a(session), name="office", exposure=ZoneExposure.ENTERPRISE
    )
    create_scope(session, data=ScopeBase(name="office-net", cidrs=["127.50.45.0/24"]))
    scope = attach_scope(session, scope="office-net", site="plant-a", zone="office")
    assert scope.zone_id == zone.id
    assert scope.site_id == zone.site_id
    with pytest.raises(NotFoundError, match="no zone 'cellar'"):
        attach_scope(session, scope="office-net", site="plant-a", zone="cellar")


def test_service_criticality_is_validated(session: Session) -> None:
    device = Device(name="plc")
    session.add(device)
    session.flush()
    assert set_criticality(session, device_id=device.id, criticality="high").criticality is (
        Criticality.HIGH
    )
    with pytest.raises(ValidationError, match="criticality: expected one of"):
        set_criticality(session, device_id=device.id, criticality="vital")
    with pytest.raises(NotFoundError):
        set_criticality(session, device_id="absent", criticality=None)


@pytest.mark.parametrize("name", ["", "   ", "z" * 101])
def test_service_zone_name_blank_or_overlong_is_refused(session: Session, name: str) -> None:
    with pytest.raises(ValidationError, match=r"^name: expected a zone name"):
        create_zone(session, site_id=_plant_a(session), name=name)


def test_service_zone_of_another_organisations_site_is_not_found(session: Session) -> None:
    other = create_organization(session, slug="transit", name="Transit")
    with pytest.raises(NotFoundError, match="no site with id"):
        create_zone(session, site_id=_plant_a(session), name="z", visible_to=other.id)
    own = create_zone(session, site_id=_plant_a(session), name="z", visible_to=_metro(session))
    assert own.site_id == _plant_a(session)
