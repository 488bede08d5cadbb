"""``cybermission import pcap|nmap PATH``: observations and assets from a file, sending nothing.

``pcap`` reads a capture (pcap or pcapng) with the probes' own decoders; ``nmap`` reads an nmap
XML report (``nmap -oX``: hosts, open ports, ``-sV`` and ICS script output mapped to the built-in
probes' facts, ``scanners/nmap_xml.py``). Both store one run: inventory, rules and findings as a
scan's. Progress (observations read, time) is drawn on stderr; the report goes to stdout.

A damaged capture is read up to the damage: the run is ``partial`` and its errors (and stderr)
say where. Exit status: 0 imported (partial too); 2 the file cannot be read at all or is not of
its kind, or no store.
"""

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cybermission.cli.report import check_format, show_report
from cybermission.cli.runtime import command_group, err, fail, logs_through, open_store, start
from cybermission.errors import CybermissionError, ValidationError

if TYPE_CHECKING:
    from cybermission.probes import Observation
    from cybermission.traffic import Conversation

app = command_group("Passive discovery from recorded traffic and other tools' reports.")

OutputOption = Annotated[
    str, typer.Option("--format", help="table, json (indented) or jsonl (one line)")
]


def _import(kind: str, path: Path, output: str) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cybermission.db import session_scope
    from cybermission.scans.passive import load_capture_reader, passive_decoders
    from cybermission.scans.pipeline import import_observations
    from cybermission.scans.report import build_scan_report

    check_format(output)
    if not path.is_file():
        raise fail(ValidationError(f"{path}: no such file"))
    settings = start()
    engine = open_store(settings)
    with (
        Progress(
            SpinnerColumn(),
            TextColumn(f"reading {path.name}: {{task.fields[obs]}} observations"),
            TimeElapsedColumn(),
            console=err(),
            transient=True,
        ) as bar,
        logs_through(err()),
    ):
        task = bar.add_task("import", total=None, obs=0)

        def counted(observations: Iterable["Observation"]) -> Iterator["Observation"]:
            for count, observation in enumerate(observations, start=1):
                bar.update(task, obs=count)
                yield observation

        problems: list[str] = []  # filled by the reader as it meets damage
        conversations: list[Conversation] = []  # and the requests it saw clients send
        try:
            reader = load_capture_reader(kind)
            run = import_observations(
                engine=engine,
                settings=settings,
                source=f"{kind}:{path.name}",
                observations=counted(
                    reader.observations(
                        path, passive_decoders(), problems=problems, conversations=conversations
                    )
                ),
                problems=problems,
                conversations=conversations,
            )
        except CybermissionError as exc:
            raise fail(exc) from exc
    with session_scope(engine) as session:
        report = build_scan_report(session, run.id)
    show_report(report, output)
    from rich.markup import escape

    for problem in problems:
        err().print(f"[yellow]damaged:[/] {escape(path.name)}: {escape(problem)}")
    if not report["assets"]:
        err().print(f"{escape(path.name)}: no service a probe knows answered in it (0 assets)")


@app.command("pcap")
def import_pcap(
    path: Annotated[Path, typer.Argument(help="A pcap or pcapng capture.")],
    output: OutputOption = "table",
) -> None:
    """Build observations and assets from a capture, without sending a packet."""
    _import("pcap", path, output)


@app.command("nmap")
def import_nmap(
    path: Annotated[Path, typer.Argument(help="An nmap XML report (nmap -oX FILE).")],
    output: OutputOption = "table",
) -> None:
    """Build observations and assets from an nmap XML report (hosts, ports, -sV, ICS scripts)."""
    _import("nmap", path, output)
