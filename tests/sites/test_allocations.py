"""Address space allocated to organisations, and scopes held inside it, on SQLite and PostgreSQL."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.config import Settings
from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.scans.models import ScopeBase
from cybermission.scans.scopes import (
    attach_scope,
    build_guard,
    create_scope,
    list_scopes,
    update_scope,
)
from cybermission.sites.allocations import (
    check_within_allocations,
    create_allocation,
    delete_allocation,
    list_allocations,
)
from cybermission.sites.models import Organization, Site
from cybermission.sites.service import create_organization, create_site

# Private space reused by two partners, as it is in the field (on loopback: tests never leave it).
SHARED = "127.60.0.0/16"


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        for key in ("water", "transit"):
            org = create_organization(session, slug=key, name=key.title())
            create_site(session, organization_id=org.id, slug=f"plant-{key}", name=key)
        session.commit()
        yield session


def _org(session: Session, slug: str) -> Organization:
    from cybermission.sites.service import get_organization_by_slug_or_raise

    return get_organization_by_slug_or_raise(session, slug=slug)


def _site(session: Session, slug: str) -> Site:
    from cybermission.sites.service import get_site_or_raise

    return get_site_or_raise(session, slug=slug)


def test_allocations_overlap_between_organisations(session: Session) -> None:
    water, transit = _org(session, "water"), _org(session, "transit")
    create_allocation(session, organization_id=water.id, cidr=SHARED)
    create_allocation(session, organization_id=transit.id, cidr=SHARED)
    assert [a.cidr for a in list_allocations(session, visible_to=water.id)] == [SHARED]
    assert len(list_allocations(session)) == 2


def test_allocations_twice_to_one_organisation_is_a_conflict(session: Session) -> None:
    water = _org(session, "water")
    create_allocation(session, organization_id=water.id, cidr=SHARED)
    with pytest.raises(ConflictError, match="already allocated"):
        create_allocation(session, organization_id=water.id, cidr=SHARED)


@pytest.mark.parametrize(
    "cidr", ["0.0.0.0/0", "127.60.0.1/16", "64:ff9b::/96", "::ffff:0:0/96", "not-a-network"]
)
def test_allocations_refuse_what_a_scope_may_not_be(session: Session, cidr: str) -> None:
    with pytest.raises(ValidationError, match="cidr"):
        create_allocation(session, organization_id=_org(session, "water").id, cidr=cidr)


def test_allocations_unknown_organisation_is_not_found(session: Session) -> None:
    with pytest.raises(NotFoundError):
        create_allocation(session, organization_id="nope", cidr=SHARED)


def test_scope_outside_the_organisations_allocations_is_refused(session: Session) -> None:
    water = _org(session, "water")
    create_allocation(session, organization_id=water.id, cidr="127.60.1.0/24")
    site = _site(session, "plant-water")
    with pytest.raises(ValidationError, match=r"cidrs: 127\.60\.2\.0/24 lies outside"):
        create_scope(
            session,
            data=ScopeBase(name="x", cidrs=["127.60.1.0/24", "127.60.2.0/24"], site_id=site.id),
        )
    scope = create_scope(
        session, data=ScopeBase(name="x", cidrs=["127.60.1.128/25"], site_id=site.id)
    )
    assert scope.organization_id == water.id


def test_scope_with_no_allocation_at_all_is_refused(session: Session) -> None:
    site = _site(session, "plant-water")
    with pytest.raises(ValidationError, match="allocated"):
        create_scope(session, data=ScopeBase(name="x", cidrs=["127.60.1.0/24"], site_id=site.id))


def test_scope_names_are_unique_per_organisation(session: Session) -> None:
    for key in ("water", "transit"):
        create_allocation(session, organization_id=_org(session, key).id, cidr=SHARED)
        create_scope(
            session,
            data=ScopeBase(
                name="plc-net", cidrs=[SHARED], site_id=_site(session, f"plant-{key}").id
            ),
        )
    with pytest.raises(ConflictError, match="plc-net"):
        create_scope(
            session,
            data=ScopeBase(
                name="plc-net", cidrs=[SHARED], site_id=_site(session, "plant-water").id
            ),
        )


def test_scope_change_is_held_inside_the_allocations(session: Session) -> None:
    water = _org(session, "water")
    create_allocation(session, organization_id=water.id, cidr="127.60.1.0/24")
    site = _site(session, "plant-water")
    scope = create_scope(
        session, data=ScopeBase(name="x", cidrs=["127.60.1.0/24"], site_id=site.id)
    )
    with pytest.raises(ValidationError, match="allocated"):
        update_scope(
            session=session,
            scope_id=scope.id,
            changes={"cidrs": ["127.60.0.0/16"]},
            visible_to=water.id,
        )


def test_scope_moved_to_another_organisations_site_needs_its_allocation(session: Session) -> None:
    water, transit = _org(session, "water"), _org(session, "transit")
    create_allocation(session, organization_id=water.id, cidr=SHARED)
    scope = create_scope(
        session,
        data=ScopeBase(name="x", cidrs=[SHARED], site_id=_site(session, "plant-water").id),
    )
    with pytest.raises(ValidationError, match="allocated"):
        update_scope(
            session=session,
            scope_id=scope.id,
            changes={"site_id": _site(session, "plant-transit").id},
            visible_to=None,
        )
    create_allocation(session, organization_id=transit.id, cidr=SHARED)
    moved = update_scope(
        session=session,
        scope_id=scope.id,
        changes={"site_id": _site(session, "plant-transit").id},
        visible_to=None,
    )
    assert moved.organization_id == transit.id


def test_attach_scope_to_a_site_needs_the_allocation(session: Session) -> None:
    create_scope(session, data=ScopeBase(name="global-net", cidrs=["127.60.9.0/24"]))
    with pytest.raises(ValidationError, match="allocated"):
        attach_scope(session, scope="global-net", site="plant-water")
    create_allocation(session, organization_id=_org(session, "water").id, cidr="127.60.9.0/24")
    assert attach_scope(session, scope="global-net", site="plant-water").organization_id == (
        _org(session, "water").id
    )


def test_allocation_a_scope_needs_cannot_be_withdrawn(session: Session) -> None:
    water = _org(session, "water")
    allocation = create_allocation(session, organization_id=water.id, cidr=SHARED)
    create_scope(
        session,
        data=ScopeBase(name="x", cidrs=[SHARED], site_id=_site(session, "plant-water").id),
    )
    with pytest.raises(ConflictError, match="scopes x lie in"):
        delete_allocation(session, allocation=allocation)
    spare = create_allocation(session, organization_id=water.id, cidr="127.61.0.0/16")
    delete_allocation(session, allocation=spare)
    assert [a.cidr for a in list_allocations(session, visible_to=water.id)] == [SHARED]


def test_check_within_allocations_names_the_field(session: Session) -> None:
    with pytest.raises(ValidationError, match=r"^excludes: "):
        check_within_allocations(
            session,
            organization_id=_org(session, "water").id,
            cidrs=["127.60.0.0/24"],
            field="excludes",
        )


def test_guard_of_an_organisation_holds_only_its_scopes(
    session: Session, settings: Settings
) -> None:
    """Overlapping allocations: each organisation's run is judged by its own scopes only."""
    water, transit = _org(session, "water"), _org(session, "transit")
    for org in (water, transit):
        create_allocation(session, organization_id=org.id, cidr=SHARED)
    create_scope(
        session,
        data=ScopeBase(name="w", cidrs=["127.60.1.0/24"], site_id=_site(session, "plant-water").id),
    )
    create_scope(
        session,
        data=ScopeBase(
            name="t", cidrs=["127.60.2.0/24"], site_id=_site(session, "plant-transit").id
        ),
    )
    water_guard = build_guard(session, settings, organization_id=water.id)
    assert water_guard.allows("127.60.1.7")
    assert not water_guard.allows("127.60.2.7")
    assert [r.name for r in water_guard.rules] == ["w"]
    assert build_guard(session, settings).allows("127.60.2.7")  # a global run: every scope
    assert [s.name for s in list_scopes(session, visible_to=transit.id)] == ["t"]


def test_guard_of_an_organisation_without_scopes_allows_nothing(
    session: Session, settings: Settings
) -> None:
    guard = build_guard(session, settings, organization_id=_org(session, "water").id)
    assert not guard.allows("127.0.0.1")  # not even the global loopback default
