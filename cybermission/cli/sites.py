"""``cybermission sites add``: a site (a plant, a district) with its authorised networks."""

import json
import sys
from typing import Annotated

import typer

from cybermission.cli.runtime import command_group, fail, open_store, start
from cybermission.errors import CybermissionError

app = command_group("Sites (a plant, a district) and their networks.")


@app.command("add")
def sites_add(
    slug: str,
    scope: Annotated[list[str], typer.Option("--scope", help="An authorised network (CIDR).")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the site.")] = "UTC",
    organization: Annotated[
        str,
        typer.Option(help="The organisation's slug (created if new: the CLI is a global admin)."),
    ] = "default",
) -> None:
    """Add a site with its authorised networks (allocated to its organisation)."""
    from cybermission.db import session_scope
    from cybermission.sites.onboarding import add_site

    engine = open_store(start())
    try:
        with session_scope(engine) as session:
            site = add_site(
                session,
                slug=slug,
                networks=scope,
                organization=organization,
                name=name,
                timezone=timezone,
            )
            site_id = site.id
    except CybermissionError as exc:
        raise fail(exc) from exc
    sys.stdout.write(json.dumps({"id": site_id, "slug": slug, "scope": scope}) + "\n")
