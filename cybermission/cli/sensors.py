"""Site sensors: ``sensors enroll|approve|revoke``, and the ``sensor`` and ``central`` workers."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cybermission.cli.listen import (
    BpfOption,
    FlushEveryOption,
    RingFileOption,
    RingFilesOption,
    RingOption,
    ring_spec,
)
from cybermission.cli.output import FormatOption, check_format, write_rows
from cybermission.cli.runtime import command_group, err, fail, open_store, start
from cybermission.errors import CybermissionError, ValidationError

app = command_group("Site sensors: enrolment, approval, revocation.")


@app.command("enroll")
def sensors_enroll(
    slug: Annotated[
        str,
        typer.Argument(help="The site: its slug, or ORGANISATION/SLUG where two use the slug."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the bundle to this file, mode 0600 (atomically; an existing file is "
            "replaced).",
        ),
    ] = None,
    to_stdout: Annotated[
        bool,
        typer.Option("--stdout", help="Print the bundle on stdout instead (it holds a password)."),
    ] = False,
) -> None:
    """Enrol a sensor for a site and write its one-time bundle (broker password inside)."""
    from cybermission.db import session_scope
    from cybermission.private_files import write_private_file
    from cybermission.sensors.service import enroll_sensor

    # The bundle holds the sensor's broker password: it goes to a 0600 file, or to stdout only
    # when asked for by name (a terminal, a pipe into a secret store), never by default.
    if (output is None) == (not to_stdout):
        raise fail(CybermissionError("give exactly one of --output FILE (mode 0600) or --stdout"))
    settings = start()
    try:
        with session_scope(open_store(settings)) as session:
            bundle = enroll_sensor(session, settings, slug=slug)
            text = json.dumps(bundle, indent=2) + "\n"
            # Written before the commit: a bundle that cannot be saved leaves no pending sensor.
            if output is not None:
                write_private_file(output, text)
    except CybermissionError as exc:
        raise fail(exc) from exc
    except OSError as exc:
        raise fail(CybermissionError(f"--output {output}: {exc.strerror or exc}")) from exc
    if to_stdout:
        sys.stdout.write(text)
    else:
        err().print(f"bundle written to {output} (mode 0600)")
    err().print(f"sensor {bundle['sensor_id']} is pending: approve it with `sensors approve`")


@app.command("list")
def sensors_list(output: FormatOption = "table") -> None:
    """Every sensor: its id, organisation and site, state and broker user."""
    from cybermission.db import session_scope
    from cybermission.sensors.service import list_sensors

    check_format(output)
    with session_scope(open_store(start())) as session:
        rows = [
            {
                "id": sensor.id,
                "organization": organization,
                "site": site.slug,
                "state": str(sensor.state),
                "username": sensor.username,
                "created_at": sensor.created_at.isoformat(),
            }
            for sensor, site, organization in list_sensors(session)
        ]
    write_rows(rows, output, columns=("id", "organization", "site", "state", "username"))


@app.command("approve")
def sensors_approve(sensor_id: str) -> None:
    """Give a pending sensor its broker rights: it starts receiving its site's chunks."""
    from cybermission.db import session_scope
    from cybermission.sensors.service import approve_sensor

    settings = start()
    try:
        with session_scope(open_store(settings)) as session:
            approve_sensor(session, settings, sensor_id=sensor_id)
    except CybermissionError as exc:
        raise fail(exc) from exc
    err().print(f"sensor {sensor_id} approved")


@app.command("revoke")
def sensors_revoke(sensor_id: str) -> None:
    """Delete a sensor's broker user and close its connections: it cannot reconnect."""
    from cybermission.db import session_scope
    from cybermission.sensors.service import revoke_sensor

    settings = start()
    try:
        with session_scope(open_store(settings)) as session:
            revoke_sensor(session, settings, sensor_id=sensor_id)
    except CybermissionError as exc:
        raise fail(exc) from exc
    err().print(f"sensor {sensor_id} revoked")


def sensor(
    site: Annotated[str, typer.Option("--site", help="The site this sensor scans.")],
    bundle: Annotated[Path, typer.Option("--bundle", help="The enrolment bundle file.")],
    journal: Annotated[Path | None, typer.Option(help="The local journal file.")] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help="Also listen on this mirror (SPAN) interface, receive-only, and ship what it "
            "shows (assets, the communication map) to the centre.",
        ),
    ] = None,
    bpf: BpfOption = None,
    flush_every_s: FlushEveryOption = 5.0,
    ring: RingOption = None,
    ring_file_mb: RingFileOption = 64.0,
    ring_files: RingFilesOption = 8,
) -> None:
    """Run a site sensor (a Celery worker that dials out to the broker)."""
    from cybermission.sensors.agent import Bundle, ListenOrder, run_sensor

    settings = start()
    if journal is not None:
        settings.sensor.journal_path = journal
    if (bpf is not None or ring is not None) and listen is None:
        raise fail(CybermissionError("--filter and --ring need --listen INTERFACE"))
    try:
        loaded = Bundle.load(bundle)
    except CybermissionError as exc:
        raise fail(exc) from exc
    if loaded.site != site:
        raise fail(CybermissionError(f"--site {site!r} but the bundle is for {loaded.site!r}"))
    # Checked before the Celery worker starts: a listener failing after it would race the
    # worker's signal handlers and the sensor could die without saying why. The listener checks
    # again (names with a slash included) when it opens the interface.
    if listen is not None and not (Path("/sys/class/net") / listen.replace("/", "")).exists():
        raise fail(ValidationError(f"interface: no interface named {listen!r}"))
    try:
        order = (
            ListenOrder(listen, bpf, flush_every_s, ring_spec(ring, ring_file_mb, ring_files))
            if listen is not None
            else None
        )
        run_sensor(loaded, settings, listen=order)
    except CybermissionError as exc:
        raise fail(exc) from exc


def central(
    relay: Annotated[bool, typer.Option(help="Also run the outbox relay and reaper.")] = True,
) -> None:
    """Run the central ingest worker (with the chunk relay and the reaper)."""
    from cybermission.sensors.central import run_central

    settings = start()
    try:
        run_central(settings, relay=relay)
    except CybermissionError as exc:
        raise fail(exc) from exc
