"""``cybermission listen IFACE``: live passive discovery on a mirror (SPAN) interface.

Frames are captured receive-only (``scanners/listen.py``), decoded by the decoders ``import
pcap`` uses, and stored as one run in batches while it listens: inventory (first/last seen),
rules and findings, and the communication map. It stops on Ctrl-C, SIGTERM or ``--duration``,
then prints the run's report (stdout) and what it captured (stderr).

The process owns its run as a scan's does (``scans/ownership.py``): it renews the run's lease
while it listens, so a session killed outright (``kill -9``, a crash) is closed ``interrupted``
with the reason by the first process that notices (any ``scan`` or ``listen`` at start-up, the
reaper of ``serve``); a cancel request stops it and ends the run ``cancelled``. Runs such a
process left behind are closed before this one starts.

Exit status: 0 stopped and stored (partial when the kernel dropped frames); 2 a bad interface
or filter (the run ends failed, saying why), or no store; 1 the store failed (before listening,
or after its retries while storing or ending the run, which the first process to notice closes).
"""

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from cybermission.cli.report import check_format, show_report
from cybermission.cli.runtime import err, fail, logs_through, open_store, start
from cybermission.errors import CybermissionError

if TYPE_CHECKING:
    from cybermission.probes import Observation
    from cybermission.scans.passive import RingSpec
    from cybermission.traffic import Conversation


# What ``listen`` and a listening ``sensor`` are told the same way.
BpfOption = Annotated[
    str | None,
    typer.Option("--filter", help="A BPF filter (tcpdump syntax), applied in the kernel."),
]
FlushEveryOption = Annotated[
    float, typer.Option("--flush-every", min=0.1, help="Seconds between inventory batches.")
]
RingOption = Annotated[
    Path | None,
    typer.Option(
        "--ring",
        help="Also keep what is captured (after the filter) in rotating pcap files in this "
        "directory, for a later `import pcap`.",
    ),
]
RingFileOption = Annotated[
    float, typer.Option("--ring-file-mb", min=0.01, help="With --ring: MiB per file.")
]
RingFilesOption = Annotated[
    int, typer.Option("--ring-files", min=1, help="With --ring: the newest files kept.")
]


def ring_spec(directory: Path | None, file_mb: float, files: int) -> "RingSpec | None":
    """The ring the options ask for, if any (``listen`` and a listening ``sensor`` share it)."""
    from cybermission.scans.passive import RingSpec

    if directory is None:
        return None
    return RingSpec(directory=directory, file_bytes=int(file_mb * 1024 * 1024), files=files)


def listen(
    interface: Annotated[str, typer.Argument(help="The mirror interface to capture on.")],
    bpf: BpfOption = None,
    flush_every_s: FlushEveryOption = 5.0,
    duration_s: Annotated[
        float | None,
        typer.Option("--duration", min=0.1, help="Stop after this many seconds."),
    ] = None,
    output: Annotated[
        str, typer.Option("--format", help="table, json (indented) or jsonl (one line)")
    ] = "table",
    ring: RingOption = None,
    ring_file_mb: RingFileOption = 64.0,
    ring_files: RingFilesOption = 8,
) -> None:
    """Learn assets and who talks to whom from a mirror port's traffic, never sending a packet."""
    from sqlalchemy.exc import SQLAlchemyError

    from cybermission.scans.listening import PassiveRecorder
    from cybermission.scans.ownership import reap_before_starting
    from cybermission.scans.passive import load_listener, passive_decoders
    from cybermission.store_faults import describe_store_error

    check_format(output)
    settings = start()
    engine = open_store(settings)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    if duration_s is not None:
        timer = threading.Timer(duration_s, stop.set)
        timer.daemon = True
        timer.start()
    # Made before the capture starts, so its rules and advisories are loaded before the first
    # frame; a capture that cannot start ends it failed, saying why.
    try:
        reap_before_starting(engine, settings.runs)
        recorder = PassiveRecorder(
            engine=engine,
            settings=settings,
            source=f"listen:{interface}",
            requested_by="listen",
            owned=settings.runs,
        )
    except CybermissionError as exc:
        raise fail(exc) from exc
    except SQLAlchemyError as exc:
        err().print(f"[bold red]error:[/] the store failed: {describe_store_error(exc)}")
        raise typer.Exit(code=1) from exc

    def should_stop() -> bool:
        return stop.is_set() or recorder.stop_request is not None

    def on_batch(observations: list["Observation"], conversations: list["Conversation"]) -> None:
        recorder.record(observations, conversations)

    with logs_through(err()):
        try:
            stats = load_listener().listen(
                interface,
                passive_decoders(),
                bpf=bpf,
                on_batch=on_batch,
                should_stop=should_stop,
                flush_every_s=flush_every_s,
                ring=ring_spec(ring, ring_file_mb, ring_files),
            )
            problems: list[str] = []
            if stats.kernel_dropped:
                problems.append(
                    f"{stats.kernel_dropped} frames dropped by the kernel (receive buffer full): "
                    "what they carried was not seen"
                )
            if stats.state_dropped:
                problems.append(f"{stats.state_dropped} rows left the bounded state unrecorded")
            run = recorder.finish(problems)
        except CybermissionError as exc:
            recorder.fail(str(exc))
            raise fail(exc) from exc
        except SQLAlchemyError as exc:
            # Retried and bounded already (PassiveRecorder): the run stays open, and the first
            # process to notice this one gone closes it interrupted (scans/ownership.py).
            err().print(f"[bold red]error:[/] the store failed: {describe_store_error(exc)}")
            raise typer.Exit(code=1) from exc
    from cybermission.db import session_scope
    from cybermission.scans.report import build_scan_report

    with session_scope(engine) as session:
        report = build_scan_report(session, run.id)
    report["capture"] = {
        "interface": interface,
        "packets": stats.packets,
        "bytes": stats.bytes,
        "kernel_dropped": stats.kernel_dropped,
        "batches": stats.batches,
        "conversations": stats.conversations,
        "ring_frames": stats.ring_frames,
        "ring_files": stats.ring_files,
    }
    show_report(report, output)
    err().print(
        f"listened on {interface}: {stats.packets} frames, {stats.kernel_dropped} dropped by the "
        f"kernel, {stats.batches} batches, {stats.conversations} conversation rows"
    )
