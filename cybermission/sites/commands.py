"""``cybermission zones add|list|attach``: network zones of sites, and which scope lies in which.

(``cybermission sites add`` lives with the sensors, which enrol per site.)
"""

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from cybermission.config import load_settings
from cybermission.db import create_db_engine, session_scope
from cybermission.errors import CybermissionError
from cybermission.logs import configure_logging
from cybermission.migrations import upgrade_database
from cybermission.sites.models import ZoneExposure
from cybermission.sites.service import attach_scope, create_zone, list_sites, list_zones

zones_app = typer.Typer(
    help="Network zones of sites (exposure, Purdue level).", no_args_is_help=True
)

_err = Console(stderr=True, soft_wrap=True, highlight=False)


@zones_app.command("add")
def zones_add(
    site: Annotated[str, typer.Argument(help="The site's slug.")],
    name: Annotated[str, typer.Argument(help="The zone's name, unique in the site.")],
    exposure: Annotated[ZoneExposure, typer.Option(help="How reachable the zone is.")] = (
        ZoneExposure.CONTROL
    ),
    purdue_level: Annotated[int | None, typer.Option(help="Purdue level, 0 to 5.")] = None,
) -> None:
    """Add a zone to a site."""
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    try:
        with session_scope(engine) as session:
            zone = create_zone(
                session, site=site, name=name, exposure=exposure, purdue_level=purdue_level
            )
            out = {"id": zone.id, "site": site, "name": zone.name, "exposure": str(zone.exposure)}
    except CybermissionError as exc:
        _err.print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    sys.stdout.write(json.dumps(out) + "\n")


@zones_app.command("list")
def zones_list() -> None:
    """Every zone, with its site, exposure and Purdue level (JSON lines)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    with session_scope(engine) as session:
        slugs = {s.id: s.slug for s in list_sites(session)}
        for zone in list_zones(session):
            line = {
                "site": slugs.get(zone.site_id),
                "name": zone.name,
                "exposure": str(zone.exposure),
                "purdue_level": zone.purdue_level,
            }
            sys.stdout.write(json.dumps(line) + "\n")


@zones_app.command("attach")
def zones_attach(
    scope: Annotated[str, typer.Argument(help="The scope's name.")],
    site: Annotated[str, typer.Argument(help="The site's slug.")],
    zone: Annotated[str | None, typer.Argument(help="The zone's name.")] = None,
) -> None:
    """Place the devices a scope covers in a site's zone (taken into account at the next scan)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    try:
        with session_scope(engine) as session:
            attach_scope(session, scope=scope, site=site, zone=zone)
    except CybermissionError as exc:
        _err.print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    _err.print(f"scope {scope} placed in {site}{'/' + zone if zone else ''}")
