"""Organisations, sites and zones: create and list them, and place a scope in a site's zone."""

from sqlmodel import Session, col, select

from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.scans.models import Scope
from cybermission.sites.allocations import check_within_allocations
from cybermission.sites.models import Organization, Site, Zone, ZoneExposure
from cybermission.visibility import get_owned_or_raise, get_visible_or_raise, sees, visible


def create_organization(session: Session, *, slug: str, name: str) -> Organization:
    """A partner organisation; ``slug`` is unique."""
    slug = _slug(slug)
    if session.exec(select(Organization).where(Organization.slug == slug)).first() is not None:
        raise ConflictError(f"slug: an organisation {slug!r} already exists")
    organization = Organization(slug=slug, name=name.strip() or slug)
    session.add(organization)
    session.flush()
    return organization


def create_site(
    session: Session, *, organization: str, slug: str, name: str, timezone: str = "UTC"
) -> Site:
    """A site of an organisation (given by slug); ``slug`` is unique across sites."""
    org = session.exec(select(Organization).where(Organization.slug == organization)).first()
    if org is None:
        raise NotFoundError(f"organization: no organisation {organization!r}")
    slug = _slug(slug)
    if session.exec(select(Site).where(Site.slug == slug)).first() is not None:
        raise ConflictError(f"slug: a site {slug!r} already exists")
    site = Site(organization_id=org.id, slug=slug, name=name.strip() or slug, timezone=timezone)
    session.add(site)
    session.flush()
    return site


def create_zone(
    session: Session,
    *,
    site: str,
    name: str,
    exposure: ZoneExposure | str = ZoneExposure.CONTROL,
    purdue_level: int | None = None,
) -> Zone:
    """A network zone of a site (by slug): its exposure weighs the score of what it holds."""
    owner = get_site_or_raise(session, slug=site)
    try:
        level = ZoneExposure(exposure)
    except ValueError as exc:
        allowed = ", ".join(e.value for e in ZoneExposure)
        raise ValidationError(f"exposure: expected one of {allowed}, got {exposure!r}") from exc
    if purdue_level is not None and not 0 <= purdue_level <= 5:
        raise ValidationError(f"purdue_level: expected 0 to 5, got {purdue_level}")
    name = name.strip()
    if not name:
        raise ValidationError("name: expected a zone name")
    clash = session.exec(select(Zone).where(Zone.site_id == owner.id, Zone.name == name)).first()
    if clash is not None:
        raise ConflictError(f"name: site {site!r} already has a zone {name!r}")
    zone = Zone(site_id=owner.id, name=name, exposure=level, purdue_level=purdue_level)
    session.add(zone)
    session.flush()
    return zone


def get_organization_by_slug_or_raise(session: Session, *, slug: str) -> Organization:
    org = session.exec(select(Organization).where(Organization.slug == slug)).first()
    if org is None:
        raise NotFoundError(f"organization: no organisation {slug!r}")
    return org


def get_site_or_raise(session: Session, *, slug: str) -> Site:
    site = session.exec(select(Site).where(Site.slug == slug)).first()
    if site is None:
        raise NotFoundError(f"site: no site {slug!r}")
    return site


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


def attach_scope(
    session: Session,
    *,
    scope: str,
    site: str,
    zone: str | None = None,
    organization: str | None = None,
) -> Scope:
    """Place the devices a scope (by name; ``organization`` picks among organisations that use
    the name) covers in a site and, optionally, one of its zones.

    The scope then belongs to the site's organisation: its networks must lie in that
    organisation's allocations and its name be new there. The next scan puts the devices there;
    rules then see ``asset.zone`` and the score the exposure.
    """
    query = select(Scope).where(Scope.name == scope)
    if organization is not None:
        org = session.exec(select(Organization).where(Organization.slug == organization)).first()
        if org is None:
            raise NotFoundError(f"organization: no organisation {organization!r}")
        query = query.where(Scope.organization_id == org.id)
    candidates = list(session.exec(query).all())
    if not candidates:
        raise NotFoundError(f"scope: no scope named {scope!r}")
    if len(candidates) > 1:
        raise ConflictError(f"scope: several scopes are named {scope!r}; name the organisation")
    stored = candidates[0]
    owner = get_site_or_raise(session, slug=site)
    check_within_allocations(
        session, organization_id=owner.organization_id, cidrs=stored.cidrs, field="scope"
    )
    clash = session.exec(
        select(Scope).where(
            Scope.name == stored.name,
            Scope.organization_id == owner.organization_id,
            Scope.id != stored.id,
        )
    ).first()
    if clash is not None:
        raise ConflictError(f"scope: the site's organisation already has a scope {scope!r}")
    stored.site_id = owner.id
    stored.organization_id = owner.organization_id
    stored.zone_id = None
    if zone is not None:
        found = session.exec(
            select(Zone).where(Zone.site_id == owner.id, Zone.name == zone)
        ).first()
        if found is None:
            raise NotFoundError(f"zone: site {site!r} has no zone {zone!r}")
        stored.zone_id = found.id
    session.add(stored)
    session.flush()
    return stored


def _slug(value: str) -> str:
    slug = value.strip().lower()
    if not slug or not all(c.isalnum() or c in "-_" for c in slug) or len(slug) > 64:
        raise ValidationError(
            f"slug: expected letters, digits, '-' or '_' (64 at most), got {value!r}"
        )
    return slug


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
