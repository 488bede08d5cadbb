"""A site with its authorised networks in one step: the global admin's ``cybermission sites add``.

The site itself is made by :func:`cybermission.sites.service.create_site` (the one place sites
are created); this module only adds what the one-step form needs around it: the organisation when
the CLI names a new one, the allocations and the scope named after the site.
"""

from collections.abc import Sequence

from sqlmodel import Session, select

from cybermission.errors import ValidationError
from cybermission.guard import parse_network
from cybermission.scans.models import ScopeBase
from cybermission.scans.scopes import create_scope
from cybermission.sites.allocations import create_allocation, list_allocations
from cybermission.sites.models import Organization, Site
from cybermission.sites.service import create_organization, create_site

# The organisation of a store used without organisations (the embedded default, the lab).
DEFAULT_ORGANIZATION = "default"


def add_site(
    session: Session,
    *,
    slug: str,
    networks: Sequence[str],
    organization: str = DEFAULT_ORGANIZATION,
    name: str | None = None,
    timezone: str = "UTC",
) -> Site:
    """A site of ``organization`` (by slug) and its authorised networks (a scope ``site-<slug>``).

    The CLI's operator is a global admin: an organisation not yet known is created (its slug
    follows the same rule as a site's), the networks are allocated to the organisation where they
    are not yet, and authorised in the same step. Nothing is written if any part is refused (the
    caller's transaction).
    """
    if not networks:
        raise ValidationError("scope: a site needs at least one authorised network")
    parsed = [str(parse_network(cidr, field="scope")) for cidr in networks]
    org = session.exec(select(Organization).where(Organization.slug == organization)).first()
    if org is None:
        org = create_organization(session, slug=organization, name=organization)
    site = create_site(
        session, organization_id=org.id, slug=slug, name=name or "", timezone=timezone
    )
    allocated = {a.cidr for a in list_allocations(session, visible_to=org.id)}
    for network in parsed:
        if network not in allocated:
            create_allocation(
                session, organization_id=org.id, cidr=network, reference=f"site {site.slug}"
            )
            allocated.add(network)
    create_scope(
        session, data=ScopeBase(name=f"site-{site.slug}", cidrs=list(networks), site_id=site.id)
    )
    return site
