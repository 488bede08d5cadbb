"""``cybermission allocations list|add|remove``: the networks each organisation may authorise."""

import json
import sys
from typing import Annotated

import typer

from cybermission.cli.output import FormatOption, check_format, write_rows
from cybermission.cli.runtime import command_group, fail, open_store, start
from cybermission.errors import CybermissionError

app = command_group("Address space allocated to organisations (their scopes must lie inside).")


@app.command("list")
def allocations_list(
    organization: Annotated[
        str | None, typer.Option(help="Only this organisation's (slug).")
    ] = None,
    output: FormatOption = "table",
) -> None:
    """The allocations: organisation, network, reference."""
    from sqlmodel import select

    from cybermission.db import session_scope
    from cybermission.sites.allocations import list_allocations
    from cybermission.sites.models import Organization
    from cybermission.sites.service import get_organization_by_slug_or_raise

    check_format(output)
    engine = open_store(start())
    try:
        with session_scope(engine) as session:
            owner = (
                get_organization_by_slug_or_raise(session, slug=organization).id
                if organization is not None
                else None
            )
            slugs = {o.id: o.slug for o in session.exec(select(Organization)).all()}
            rows = [
                {
                    "id": allocation.id,
                    "organization": slugs.get(allocation.organization_id),
                    "cidr": allocation.cidr,
                    "reference": allocation.reference,
                    "created_by": allocation.created_by,
                    "created_at": allocation.created_at,
                }
                for allocation in list_allocations(session, visible_to=owner)
            ]
    except CybermissionError as exc:
        raise fail(exc) from exc
    write_rows(
        rows, output, columns=("organization", "cidr", "reference", "created_by", "created_at")
    )


@app.command("add")
def allocations_add(
    organization: Annotated[str, typer.Argument(help="The organisation's slug.")],
    cidr: Annotated[str, typer.Argument(help="The network, in CIDR form.")],
    reference: Annotated[str, typer.Option(help="Contract or ticket reference.")] = "",
) -> None:
    """Allocate a network to an organisation (its admins may then authorise scopes in it)."""
    from cybermission.db import session_scope
    from cybermission.sites.allocations import create_allocation
    from cybermission.sites.service import get_organization_by_slug_or_raise

    engine = open_store(start())
    try:
        with session_scope(engine) as session:
            org = get_organization_by_slug_or_raise(session, slug=organization)
            allocation = create_allocation(
                session, organization_id=org.id, cidr=cidr, reference=reference
            )
            line = {"id": allocation.id, "organization": org.slug, "cidr": allocation.cidr}
    except CybermissionError as exc:
        raise fail(exc) from exc
    sys.stdout.write(json.dumps(line) + "\n")


@app.command("remove")
def allocations_remove(
    organization: Annotated[str, typer.Argument(help="The organisation's slug.")],
    cidr: Annotated[str, typer.Argument(help="The allocated network.")],
) -> None:
    """Withdraw an allocation (refused while a scope of the organisation lies in it)."""
    from cybermission.db import session_scope
    from cybermission.sites.allocations import delete_allocation, find_allocation_or_raise
    from cybermission.sites.service import get_organization_by_slug_or_raise

    engine = open_store(start())
    try:
        with session_scope(engine) as session:
            org = get_organization_by_slug_or_raise(session, slug=organization)
            allocation = find_allocation_or_raise(session, organization_id=org.id, cidr=cidr)
            delete_allocation(session, allocation=allocation)
    except CybermissionError as exc:
        raise fail(exc) from exc
