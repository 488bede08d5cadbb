"""Console commands of the distributed mode: sites, sensor enrolment, the sensor, the central."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cybermission.config import load_settings
from cybermission.db import create_db_engine, session_scope
from cybermission.errors import CybermissionError
from cybermission.logs import configure_logging
from cybermission.migrations import upgrade_database
from cybermission.sensors.service import add_site, approve_sensor, enroll_sensor, revoke_sensor

sites_app = typer.Typer(
    help="Sites (a plant, a district) and their networks.", no_args_is_help=True
)
sensors_app = typer.Typer(
    help="Site sensors: enrolment, approval, revocation.", no_args_is_help=True
)
err = Console(stderr=True)


def _fail(exc: CybermissionError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(code=2)


@sites_app.command("add")
def sites_add(
    slug: str,
    scope: Annotated[list[str], typer.Option("--scope", help="An authorised network (CIDR).")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the site.")] = "UTC",
) -> None:
    """Add a site with its authorised networks."""
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    try:
        with session_scope(engine) as session:
            site = add_site(session, slug=slug, scope=scope, name=name, timezone=timezone)
            site_id = site.id
    except CybermissionError as exc:
        raise _fail(exc) from exc
    sys.stdout.write(json.dumps({"id": site_id, "slug": slug, "scope": scope}) + "\n")


@sensors_app.command("enroll")
def sensors_enroll(slug: str) -> None:
    """Enrol a sensor for a site and print its one-time bundle (keep it secret)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    try:
        with session_scope(engine) as session:
            bundle = enroll_sensor(session, settings, slug=slug)
    except CybermissionError as exc:
        raise _fail(exc) from exc
    sys.stdout.write(json.dumps(bundle, indent=2) + "\n")
    err.print(f"sensor {bundle['sensor_id']} is pending: approve it with `sensors approve`")


@sensors_app.command("approve")
def sensors_approve(sensor_id: str) -> None:
    """Give a pending sensor its broker rights: it starts receiving its site's chunks."""
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            approve_sensor(session, settings, sensor_id=sensor_id)
    except CybermissionError as exc:
        raise _fail(exc) from exc
    err.print(f"sensor {sensor_id} approved")


@sensors_app.command("revoke")
def sensors_revoke(sensor_id: str) -> None:
    """Delete a sensor's broker user and close its connections: it cannot reconnect."""
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            revoke_sensor(session, settings, sensor_id=sensor_id)
    except CybermissionError as exc:
        raise _fail(exc) from exc
    err.print(f"sensor {sensor_id} revoked")


def sensor(
    site: Annotated[str, typer.Option("--site", help="The site this sensor scans.")],
    bundle: Annotated[Path, typer.Option("--bundle", help="The enrolment bundle file.")],
    journal: Annotated[Path | None, typer.Option(help="The local journal file.")] = None,
) -> None:
    """Run a site sensor (a Celery worker that dials out to the broker)."""
    from cybermission.sensors.agent import Bundle, run_sensor

    settings = load_settings()
    configure_logging(settings.log_level)
    if journal is not None:
        settings.sensor.journal_path = journal
    try:
        loaded = Bundle.load(bundle)
    except CybermissionError as exc:
        raise _fail(exc) from exc
    if loaded.site != site:
        raise _fail(CybermissionError(f"--site {site!r} but the bundle is for {loaded.site!r}"))
    try:
        run_sensor(loaded, settings)
    except CybermissionError as exc:
        raise _fail(exc) from exc


def central(
    relay: Annotated[bool, typer.Option(help="Also run the outbox relay and reaper.")] = True,
) -> None:
    """Run the central ingest worker (with the chunk relay and the reaper)."""
    from cybermission.sensors.central import run_central

    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        run_central(settings, relay=relay)
    except CybermissionError as exc:
        raise _fail(exc) from exc
