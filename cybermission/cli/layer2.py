"""``cybermission discover-l2 IFACE``: layer-2 discovery of the segment an interface is on.

PROFINET DCP Identify (every station, or ``--station NAME``), LLDP announcements read for
``--listen`` seconds, and an ARP sweep of the interface's attached subnet; every address judged
by the scope guard first (the segment must be wholly authorised for DCP's multicast). Stored as
one run (inventory, rules, findings) whose ``sent`` lists what went out. Needs root.

Exit status: 0 done; 2 a bad interface, a segment not authorised, or no store.
"""

from typing import Annotated

import typer

from cybermission.cli.report import check_format, show_report
from cybermission.cli.runtime import err, fail, logs_through, open_store, start
from cybermission.errors import CybermissionError


def discover_l2(
    interface: Annotated[str, typer.Argument(help="The interface on the segment to discover.")],
    station: Annotated[
        str | None, typer.Option("--station", help="DCP Identify this name of station only.")
    ] = None,
    dcp: Annotated[bool, typer.Option("--dcp/--no-dcp", help="PROFINET DCP Identify.")] = True,
    arp: Annotated[bool, typer.Option("--arp/--no-arp", help="ARP sweep of the subnet.")] = True,
    listen_s: Annotated[
        float, typer.Option("--listen", min=0.5, max=120, help="Seconds answers are read.")
    ] = 3.0,
    output: Annotated[
        str, typer.Option("--format", help="table, json (indented) or jsonl (one line)")
    ] = "table",
) -> None:
    """Find stations of a segment by DCP Identify, LLDP and ARP, sending nothing that writes."""
    from cybermission.db import session_scope
    from cybermission.scans.layer2 import Layer2Options, load_layer2
    from cybermission.scans.listening import PassiveRecorder
    from cybermission.scans.report import build_scan_report
    from cybermission.scans.scopes import build_guard

    check_format(output)
    settings = start()
    engine = open_store(settings)
    with logs_through(err()):
        try:
            with session_scope(engine) as session:
                guard = build_guard(session, settings)
            discoverer = load_layer2()
            result = discoverer.discover(
                interface,
                check=guard.check,
                options=Layer2Options(dcp=dcp, station=station, arp=arp, listen_s=listen_s),
            )
            recorder = PassiveRecorder(
                engine=engine,
                settings=settings,
                source=f"layer2:{interface}",
                requested_by="layer2",
                owned=settings.runs,  # a process killed while recording leaves no run running
            )
            recorder.state.sent.of(discoverer.name).update(result.sent)
            recorder.record(result.observations)
            run = recorder.finish()
        except CybermissionError as exc:
            raise fail(exc) from exc
    with session_scope(engine) as session:
        report = build_scan_report(session, run.id)
    report["layer2"] = {
        "interface": interface,
        "subnet": result.subnet,
        "sent": dict(result.sent),
        "refused": result.refused,
        "unaddressed": result.unaddressed,
    }
    show_report(report, output)
    err().print(
        f"{interface} ({result.subnet}): sent {dict(result.sent)}, "
        f"{len(result.observations)} observations, {len(result.unaddressed)} without an address"
    )
