"""``cybermission zones add|list|attach``: network zones of sites, and which scope lies in which."""

import json
import sys
from typing import Annotated

import typer

from cybermission.cli.output import FormatOption, check_format, write_rows
from cybermission.cli.runtime import command_group, err, fail, open_store, start
from cybermission.errors import CybermissionError
from cybermission.sites.exposure import ZoneExposure

app = command_group("Network zones of sites (exposure, Purdue level).")


@app.command("add")
def zones_add(
    site: Annotated[
        str, typer.Argument(help="The site: its slug, or ORGANISATION/SLUG where two use it.")
    ],
    name: Annotated[str, typer.Argument(help="The zone's name, unique in the site.")],
    exposure: Annotated[ZoneExposure, typer.Option(help="How reachable the zone is.")] = (
        ZoneExposure.CONTROL
    ),
    purdue_level: Annotated[int | None, typer.Option(help="Purdue level, 0 to 5.")] = None,
) -> None:
    """Add a zone to a site."""
    from cybermission.db import session_scope
    from cybermission.sites.service import create_zone, get_site_or_raise

    engine = open_store(start())
    try:
        with session_scope(engine) as session:
            zone = create_zone(
                session,
                site_id=get_site_or_raise(session, slug=site).id,
                name=name,
                exposure=exposure,
                purdue_level=purdue_level,
            )
            out = {"id": zone.id, "site": site, "name": zone.name, "exposure": str(zone.exposure)}
    except CybermissionError as exc:
        raise fail(exc) from exc
    sys.stdout.write(json.dumps(out) + "\n")


@app.command("list")
def zones_list(output: FormatOption = "table") -> None:
    """Every zone, with its site, exposure and Purdue level."""
    from cybermission.db import session_scope
    from cybermission.sites.service import list_sites, list_zones

    check_format(output)
    with session_scope(open_store(start())) as session:
        slugs = {s.id: s.slug for s in list_sites(session)}
        rows = [
            {
                "site": slugs.get(zone.site_id),
                "name": zone.name,
                "exposure": str(zone.exposure),
                "purdue_level": zone.purdue_level,
            }
            for zone in list_zones(session)
        ]
    write_rows(rows, output, columns=("site", "name", "exposure", "purdue_level"))


@app.command("attach")
def zones_attach(
    scope: Annotated[str, typer.Argument(help="The scope's name.")],
    site: Annotated[
        str, typer.Argument(help="The site: its slug, or ORGANISATION/SLUG where two use it.")
    ],
    zone: Annotated[str | None, typer.Argument(help="The zone's name.")] = None,
    organization: Annotated[
        str | None,
        typer.Option(help="The scope's organisation (slug), where several use the name."),
    ] = None,
) -> None:
    """Place the devices a scope covers in a site's zone (taken into account at the next scan)."""
    from cybermission.db import session_scope
    from cybermission.scans.scopes import attach_scope

    engine = open_store(start())
    try:
        with session_scope(engine) as session:
            attach_scope(session, scope=scope, site=site, zone=zone, organization=organization)
    except CybermissionError as exc:
        raise fail(exc) from exc
    err().print(f"scope {scope} placed in {site}{'/' + zone if zone else ''}")
