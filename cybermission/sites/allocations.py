"""Address space allocated to organisations: a global admin allocates, an organisation's scopes
must lie inside its allocations.

This is what stops one partner from authorising (and then scanning) another partner's network: a
scope placed on an organisation's site may only cover networks a global admin allocated to that
organisation. Allocations of two organisations may overlap (private ranges are reused from one
partner to the next); each run then scans with its own organisation's scopes only
(:func:`cybermission.scans.scopes.build_guard`), so overlapping space never mixes inventories.
"""

from collections.abc import Iterable

from sqlmodel import Session, col, select

from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.guard import IPNetwork, parse_network
from cybermission.scans.models import Scope
from cybermission.sites.models import Allocation, Organization
from cybermission.visibility import get_owned_or_raise, visible


def create_allocation(
    session: Session,
    *,
    organization_id: str,
    cidr: str,
    reference: str = "",
    created_by: str = "cli",
) -> Allocation:
    """Allocate ``cidr`` (strict CIDR, no wider than a scope may be) to an organisation."""
    if session.get(Organization, organization_id) is None:
        raise NotFoundError(f"organization_id: no organisation with id {organization_id!r}")
    network = str(parse_network(cidr, field="cidr"))
    clash = session.exec(
        select(Allocation).where(
            Allocation.organization_id == organization_id, Allocation.cidr == network
        )
    ).first()
    if clash is not None:
        raise ConflictError(f"cidr: {network} is already allocated to this organisation")
    allocation = Allocation(
        organization_id=organization_id,
        cidr=network,
        reference=reference,
        created_by=created_by[:100],
    )
    session.add(allocation)
    session.flush()
    return allocation


def list_allocations(session: Session, *, visible_to: str | None = None) -> list[Allocation]:
    """The allocations ``visible_to`` sees (its own; None: every one), by organisation and CIDR."""
    query = select(Allocation).where(visible(col(Allocation.organization_id), visible_to))
    return list(
        session.exec(query.order_by(col(Allocation.organization_id), col(Allocation.cidr))).all()
    )


def get_allocation_or_raise(
    *, session: Session, allocation_id: str, visible_to: str | None
) -> Allocation:
    return get_owned_or_raise(
        session, Allocation, allocation_id, visible_to=visible_to, what="allocation"
    )


def find_allocation_or_raise(session: Session, *, organization_id: str, cidr: str) -> Allocation:
    """The allocation of ``cidr`` (as written or normalised) to an organisation."""
    network = str(parse_network(cidr, field="cidr"))
    found = session.exec(
        select(Allocation).where(
            Allocation.organization_id == organization_id, Allocation.cidr == network
        )
    ).first()
    if found is None:
        raise NotFoundError(f"cidr: {network} is not allocated to this organisation")
    return found


def delete_allocation(session: Session, *, allocation: Allocation) -> None:
    """Withdraw an allocation, unless a scope of the organisation still needs it (withdraw or
    narrow that scope first: a scope outside every allocation would keep authorising scans)."""
    rest = [
        parse_network(a.cidr)
        for a in list_allocations(session, visible_to=allocation.organization_id)
        if a.id != allocation.id
    ]
    scopes = session.exec(
        select(Scope).where(Scope.organization_id == allocation.organization_id)
    ).all()
    needing = sorted(s.name for s in scopes if _outside(s.cidrs, rest))
    if needing:
        raise ConflictError(
            f"cidr: scopes {', '.join(needing)} lie in {allocation.cidr}; withdraw or narrow "
            "them before the allocation"
        )
    session.delete(allocation)
    session.flush()


def check_within_allocations(
    session: Session, *, organization_id: str, cidrs: Iterable[str], field: str = "cidrs"
) -> None:
    """Raise :class:`ValidationError` naming the first of ``cidrs`` that lies in no allocation
    of the organisation (the message names nothing of another organisation)."""
    allocated = [
        parse_network(a.cidr) for a in list_allocations(session, visible_to=organization_id)
    ]
    for cidr in cidrs:
        if _outside([cidr], allocated):
            raise ValidationError(
                f"{field}: {cidr} lies outside the networks allocated to the scope's "
                "organisation; a global admin allocates networks (POST /api/v1/allocations, "
                "`cybermission allocations add`)"
            )


def _outside(cidrs: Iterable[str], allocated: list[IPNetwork]) -> bool:
    """Whether any of ``cidrs`` lies in none of ``allocated``."""
    for cidr in cidrs:
        network = parse_network(cidr)
        if not any(
            network.version == a.version and network.subnet_of(a)  # type: ignore[arg-type]
            for a in allocated
        ):
            return True
    return False
