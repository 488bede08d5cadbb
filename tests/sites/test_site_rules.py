"""The rules every site creation shares (sites/service.create_site), on SQLite and PostgreSQL: one
slug rule, one time-zone check, one organisation rule, whoever creates the site (the service, the
CLI's one-step ``sites add``, the API)."""

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.scans.models import Scope
from cybermission.sites.allocations import list_allocations
from cybermission.sites.models import Organization, Site
from cybermission.sites.onboarding import add_site
from cybermission.sites.service import (
    check_slug,
    check_timezone,
    create_organization,
    create_site,
    get_site_or_raise,
)

BAD_SLUGS = ["", "  ", "Plant", "plant_a", "plant.a", "-plant", "pl ant", "a" * 65, "plant\x00"]
BAD_ZONES = ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "", "x" * 65, "UTC\x00"]


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        create_organization(session, slug="water", name="Water works")
        create_organization(session, slug="transit", name="Transit")
        session.commit()
        yield session


def _org(session: Session, slug: str) -> str:
    return session.exec(select(Organization).where(Organization.slug == slug)).one().id


@pytest.mark.parametrize("slug", BAD_SLUGS)
def test_site_rules_slug_refused_by_every_creator(session: Session, slug: str) -> None:
    water = _org(session, "water")
    with pytest.raises(ValidationError, match=r"^slug: expected lower-case"):
        create_site(session, organization_id=water, slug=slug)
    with pytest.raises(ValidationError, match=r"^slug: expected lower-case"):
        add_site(session, slug=slug, networks=["127.50.1.0/24"], organization="water")
    with pytest.raises(ValidationError, match=r"^slug: expected lower-case"):
        create_organization(session, slug=slug, name="x")
    assert session.exec(select(Site)).all() == []


@pytest.mark.parametrize("timezone", BAD_ZONES)
def test_site_rules_timezone_refused_by_every_creator(session: Session, timezone: str) -> None:
    water = _org(session, "water")
    with pytest.raises(ValidationError, match=r"^timezone: "):
        create_site(session, organization_id=water, slug="plant", timezone=timezone)
    with pytest.raises(ValidationError, match=r"^timezone: "):
        add_site(session, slug="plant", networks=["127.50.1.0/24"], timezone=timezone)
    assert session.exec(select(Site)).all() == []


def test_site_rules_valid_site_keeps_its_zone_and_stripped_slug(session: Session) -> None:
    site = create_site(
        session, organization_id=_org(session, "water"), slug=" plant-7 ", timezone="Europe/Paris"
    )
    assert (site.slug, site.timezone, site.name) == ("plant-7", "Europe/Paris", "plant-7")


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_site_rules_any_text_is_a_zone_or_a_validation_error(text: str) -> None:
    outcome: object
    try:
        outcome = check_timezone(text)
    except ValidationError as exc:
        outcome = exc
    assert outcome == text or str(outcome).startswith("timezone: ")


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_site_rules_any_text_is_a_slug_or_a_validation_error(text: str) -> None:
    try:
        slug = check_slug(text)
    except ValidationError as exc:
        message = str(exc)
        slug = None
    if slug is None:
        assert message.startswith("slug: ")
    else:
        assert slug == text.strip()
        assert slug.isascii()
        assert not {".", "_", "/"} & set(slug)


def test_site_rules_organisation_must_exist_and_be_visible(session: Session) -> None:
    water, transit = _org(session, "water"), _org(session, "transit")
    with pytest.raises(NotFoundError, match="no organisation"):
        create_site(session, organization_id="absent", slug="plant")
    # Transit's admin cannot put a site in Water's organisation: not found, as if absent.
    with pytest.raises(NotFoundError, match="no organisation"):
        create_site(session, organization_id=water, slug="plant", visible_to=transit)
    own = create_site(session, organization_id=transit, slug="plant", visible_to=transit)
    assert own.organization_id == transit


def test_site_rules_duplicate_slug_in_one_organisation_is_a_conflict(session: Session) -> None:
    water = _org(session, "water")
    create_site(session, organization_id=water, slug="plant")
    with pytest.raises(ConflictError, match="slug: the organisation already has a site 'plant'"):
        create_site(session, organization_id=water, slug="plant")


def test_site_rules_same_slug_in_two_organisations_named_by_organisation(
    session: Session,
) -> None:
    water = create_site(session, organization_id=_org(session, "water"), slug="plant")
    transit = create_site(session, organization_id=_org(session, "transit"), slug="plant")
    assert water.id != transit.id
    with pytest.raises(ConflictError, match="write ORGANISATION/plant"):
        get_site_or_raise(session, slug="plant")
    assert get_site_or_raise(session, slug="water/plant").id == water.id
    assert get_site_or_raise(session, slug="transit/plant").id == transit.id
    with pytest.raises(NotFoundError, match="no site 'metro/plant'"):
        get_site_or_raise(session, slug="metro/plant")
    # The one-step form (the CLI) follows the same rule: Transit's second "plant" is refused.
    with pytest.raises(ConflictError, match="already has a site 'plant'"):
        add_site(session, slug="plant", networks=["127.50.3.0/24"], organization="transit")


def test_site_rules_one_step_add_creates_the_organisation_and_allocates(session: Session) -> None:
    site = add_site(session, slug="depot", networks=["127.50.2.0/24"], organization="metro-bus")
    org = session.exec(select(Organization).where(Organization.slug == "metro-bus")).one()
    assert site.organization_id == org.id
    assert [a.cidr for a in list_allocations(session, visible_to=org.id)] == ["127.50.2.0/24"]
    scope = session.exec(select(Scope).where(Scope.name == "site-depot")).one()
    assert (scope.site_id, scope.organization_id) == (site.id, org.id)


def test_site_rules_one_step_add_refuses_a_bad_network_before_writing(session: Session) -> None:
    with pytest.raises(ValidationError, match=r"^scope: "):
        add_site(session, slug="depot", networks=["127.50.2.0/33"], organization="new-org")
    with pytest.raises(ValidationError, match=r"^scope: "):
        add_site(session, slug="depot", networks=[], organization="new-org")
    assert session.exec(select(Site)).all() == []
    assert session.exec(select(Organization).where(Organization.slug == "new-org")).all() == []
