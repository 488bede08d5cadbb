"""Organisations, sites and zones: create and list them.

Every site is created here (:func:`create_site`): the API, the CLI and the sensors' set-up all call
it, so a site has one slug rule, one time-zone check and one organisation rule. Every zone is
created here too (:func:`create_zone`), by the API and the CLI alike.
"""

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.sites.models import Organization, Sector, Site, Zone, ZoneExposure
from cybermission.visibility import get_owned_or_raise, get_visible_or_raise, sees, visible

# Lower-case letters, digits and '-', starting with a letter or digit: a slug is typed in CLI
# arguments (`ORGANISATION/slug`) and URLs, where '/' and '.' would be ambiguous. It does not name
# the sensors' RabbitMQ vhosts: those use the site's id (``site.<site id>``), as slugs are unique
# per organisation only. The API's request schema uses this pattern too.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
_SLUG = re.compile(SLUG_PATTERN)
MAX_TIMEZONE = 64  # the column's length
MAX_ZONE_NAME = 100  # the column's length


def check_slug(value: str, *, field: str = "slug") -> str:
    """``value`` stripped, if it is a slug (:data:`SLUG_PATTERN`); else a ValidationError."""
    slug = value.strip()
    if _SLUG.fullmatch(slug) is None:
        raise ValidationError(
            f"{field}: expected lower-case letters, digits or '-' (64 at most, not starting "
            f"with '-'), got {value[:80]!r}"
        )
    return slug


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone this host knows (schedules fire in the site's local
    time); else a ValidationError naming the field."""
    if not name or len(name) > MAX_TIMEZONE:
        raise ValidationError(f"timezone: expected an IANA time zone, got {name[:80]!r}")
    try:
        ZoneInfo(name)
    # ValueError: a path-like or NUL-bearing key; OSError: a directory of the zone database
    # ("America") on some Pythons.
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValidationError(f"timezone: {name[:80]!r} is not an IANA time zone") from exc
    return name


def create_organization(
    session: Session, *, slug: str, name: str, sector: Sector = Sector.OTHER
) -> Organization:
    """A partner organisation of a sector; ``slug`` is unique."""
    slug = check_slug(slug)
    if session.exec(select(Organization).where(Organization.slug == slug)).first() is not None:
        raise ConflictError(f"slug: an organisation {slug!r} already exists")
    organization = Organization(slug=slug, name=name.strip() or slug, sector=sector)
    _insert(session, organization, f"slug: an organisation {slug!r} already exists")
    return organization


def create_site(
    session: Session,
    *,
    organization_id: str,
    slug: str,
    name: str = "",
    timezone: str = "UTC",
    visible_to: str | None = None,
) -> Site:
    """A site of the organisation ``organization_id``, the one way sites are made.

    The organisation must exist and be one ``visible_to`` sees (None, a global admin's: any);
    another organisation's is not found, as if it did not exist. ``slug`` follows
    :func:`check_slug` and is unique in the organisation (another organisation may use it: a
    409 never tells one organisation another's site names); ``timezone`` is an IANA zone.
    """
    org = get_organization_or_raise(
        session=session, organization_id=organization_id, visible_to=visible_to
    )
    slug = check_slug(slug)
    timezone = check_timezone(timezone)
    conflict = f"slug: the organisation already has a site {slug!r}"
    clash = select(Site).where(Site.organization_id == org.id, Site.slug == slug)
    if session.exec(clash).first() is not None:
        raise ConflictError(conflict)
    site = Site(organization_id=org.id, slug=slug, name=name.strip() or slug, timezone=timezone)
    _insert(session, site, conflict)
    return site


def _insert(session: Session, row: Organization | Site | Zone, conflict: str) -> None:
    """Add ``row``; a unique key a concurrent writer took first is a conflict, not a 500."""
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise ConflictError(conflict) from exc


def create_zone(
    session: Session,
    *,
    site_id: str,
    name: str,
    exposure: ZoneExposure | str = ZoneExposure.CONTROL,
    purdue_level: int | None = None,
    visible_to: str | None = None,
) -> Zone:
    """A network zone of the site ``site_id``, the one way zones are made (the API and the CLI's
    ``zones add`` call it): its exposure weighs the score of what it holds.

    The site must be one ``visible_to`` sees (None, a global admin's or the CLI's: any); another
    organisation's is not found, as if it did not exist. ``name`` is stripped, non-empty, at most
    :data:`MAX_ZONE_NAME` characters and unique in the site.
    """
    owner = get_site_by_id_or_raise(session=session, site_id=site_id, visible_to=visible_to)
    try:
        level = ZoneExposure(exposure)
    except ValueError as exc:
        allowed = ", ".join(e.value for e in ZoneExposure)
        raise ValidationError(f"exposure: expected one of {allowed}, got {exposure!r}") from exc
    if purdue_level is not None and not 0 <= purdue_level <= 5:
        raise ValidationError(f"purdue_level: expected 0 to 5, got {purdue_level}")
    name = name.strip()
    if not name or len(name) > MAX_ZONE_NAME:
        raise ValidationError(
            f"name: expected a zone name of 1 to {MAX_ZONE_NAME} characters, got {name[:80]!r}"
        )
    conflict = f"name: the site already has a zone {name!r}"
    clash = select(Zone).where(Zone.site_id == owner.id, Zone.name == name)
    if session.exec(clash).first() is not None:
        raise ConflictError(conflict)
    zone = Zone(site_id=owner.id, name=name, exposure=level, purdue_level=purdue_level)
    _insert(session, zone, conflict)
    return zone


def get_organization_by_slug_or_raise(session: Session, *, slug: str) -> Organization:
    org = session.exec(select(Organization).where(Organization.slug == slug)).first()
    if org is None:
        raise NotFoundError(f"organization: no organisation {slug!r}")
    return org


def get_site_or_raise(session: Session, *, slug: str) -> Site:
    """The site a person names (the CLI's): ``SLUG``, or ``ORGANISATION/SLUG`` where several
    organisations have a site of that slug (slugs hold no '/')."""
    organization, _, site_slug = slug.rpartition("/")
    query = select(Site).where(Site.slug == site_slug)
    if organization:
        query = query.join(Organization, col(Organization.id) == col(Site.organization_id)).where(
            Organization.slug == organization
        )
    found = list(session.exec(query.limit(2)).all())
    if not found:
        raise NotFoundError(f"site: no site {slug!r}")
    if len(found) > 1:
        raise ConflictError(
            f"site: several organisations have a site {site_slug!r}; write ORGANISATION/{site_slug}"
        )
    return found[0]


def list_organizations(session: Session, *, visible_to: str | None) -> list[Organization]:
    """The organisations ``visible_to`` sees (its own, or every one), by slug."""
    query = select(Organization).where(visible(col(Organization.id), visible_to))
    return list(session.exec(query.order_by(col(Organization.slug))))


def list_sites(session: Session, *, visible_to: str | None = None) -> list[Site]:
    """The sites ``visible_to`` sees (None, the CLI's: every site), by slug."""
    query = select(Site).where(visible(col(Site.organization_id), visible_to))
    return list(session.exec(query.order_by(col(Site.slug))))


def list_zones(session: Session, *, site: str | None = None) -> list[Zone]:
    statement = select(Zone).order_by(col(Zone.site_id), col(Zone.name))
    if site is not None:
        statement = statement.where(Zone.site_id == get_site_or_raise(session, slug=site).id)
    return list(session.exec(statement))


def get_organization_or_raise(
    *, session: Session, organization_id: str, visible_to: str | None
) -> Organization:
    return get_visible_or_raise(
        session,
        Organization,
        organization_id,
        visible_to=visible_to,
        what="organisation",
        organization_of=lambda o: o.id,
    )


def get_site_by_id_or_raise(*, session: Session, site_id: str, visible_to: str | None) -> Site:
    """The site ``site_id`` if ``visible_to`` sees it (:func:`get_site_or_raise` finds by slug)."""
    return get_owned_or_raise(session, Site, site_id, visible_to=visible_to, what="site")


def get_zone_or_raise(*, session: Session, zone_id: str, visible_to: str | None) -> Zone:
    """The zone if ``visible_to`` sees its site; a zone of another organisation's site is not
    found, as if it did not exist (the error names nothing of that organisation)."""
    zone = session.get(Zone, zone_id)
    site = session.get(Site, zone.site_id) if zone is not None else None
    if zone is None or site is None or not sees(visible_to, site.organization_id):
        raise NotFoundError(f"no zone with id {zone_id!r}")
    return zone


def list_site_zones(*, session: Session, site_id: str, visible_to: str | None) -> list[Zone]:
    """The zones of a site ``visible_to`` sees, by name."""
    site = get_site_by_id_or_raise(session=session, site_id=site_id, visible_to=visible_to)
    query = select(Zone).where(Zone.site_id == site.id).order_by(col(Zone.name))
    return list(session.exec(query).all())
