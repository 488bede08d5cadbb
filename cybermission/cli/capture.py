"""``cybermission import pcap PATH``: observations and assets from a capture, sending nothing."""

from pathlib import Path
from typing import Annotated

import typer

from cybermission.cli.report import show_report
from cybermission.cli.runtime import command_group, fail, open_store, start
from cybermission.errors import CybermissionError

app = command_group("Passive discovery from recorded traffic.")


@app.command("pcap")
def import_pcap(
    path: Annotated[Path, typer.Argument(help="A pcap or pcapng capture.")],
    output: Annotated[str, typer.Option("--format", help="json or table")] = "table",
) -> None:
    """Build observations and assets from a capture, without sending a packet."""
    from cybermission.db import session_scope
    from cybermission.scans.passive import load_capture_reader, passive_decoders
    from cybermission.scans.pipeline import import_observations
    from cybermission.scans.report import build_scan_report

    settings = start()
    engine = open_store(settings)
    try:
        reader = load_capture_reader("pcap")
        run = import_observations(
            engine=engine,
            settings=settings,
            source=f"pcap:{path.name}",
            observations=reader.observations(path, passive_decoders()),
        )
    except CybermissionError as exc:
        raise fail(exc) from exc
    with session_scope(engine) as session:
        report = build_scan_report(session, run.id)
    show_report(report, output)
