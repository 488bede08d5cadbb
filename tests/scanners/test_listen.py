"""The live passive sensor on a real interface: real captures replayed with tcpreplay onto a veth
pair between two namespaces this test makes; ``listen`` must find what ``import pcap`` finds in
the same files, and send nothing."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.utils import rdpcap
from sqlmodel import Session, select
from typer.testing import CliRunner

from cybermission.cli import app
from cybermission.db import create_db_engine
from cybermission.errors import ValidationError
from cybermission.inventory.communications import Communication
from cybermission.inventory.models import Device, Service
from cybermission.scans.models import ScanRun, ScanStatus
from scanners.listen import ReceiveOnlySocket
from tests.cli.stores import store_url
from tests.conftest import shared_data
from tests.mirror import Mirror, listening, mirror_link, require_mirror_tools

# Captures of distinct devices (one decoder spans them all when listening).
CAPTURES = [
    ("modbus", "mod_17.pcap"),
    ("s7", "s7_all.pcap"),
    ("bacnet", "bacnet.pcap"),
    ("enip", "cip.pcap"),
    ("iec104", "iec104.pcap"),
    ("dnp3", "read_and_response.pcap"),
    ("opcua", "opcua.pcap"),
    ("melsec-q", "melsecq_tcp.pcapng"),
    ("crimson_v3", "Crimson_V3_getversion.pcap"),
]


@dataclass(frozen=True, slots=True)
class Listened:
    mirror: Mirror
    sent: int
    tx_before: tuple[int, int]
    tx_after: tuple[int, int]
    report: dict[str, Any]
    listened_url: str
    imported_url: str
    ring: Path


def _services(url: str) -> set[tuple[object, ...]]:
    engine = create_db_engine(url)
    with Session(engine) as session:
        rows = session.exec(select(Service)).all()
        found = {
            (s.address, s.port, s.transport, s.protocol, json.dumps(s.facts, sort_keys=True))
            for s in rows
        }
    engine.dispose()
    return found


def _devices(url: str) -> set[tuple[object, ...]]:
    engine = create_db_engine(url)
    with Session(engine) as session:
        found = {(d.vendor, d.product, d.model, d.serial) for d in session.exec(select(Device))}
    engine.dispose()
    return found


@pytest.fixture(scope="module")
def listened(tmp_path_factory: pytest.TempPathFactory) -> Listened:
    require_mirror_tools()
    captures = [shared_data("pcaps", *parts) for parts in CAPTURES]
    workdir = tmp_path_factory.mktemp("listen")
    imported_url = store_url(workdir / "imported.db")
    _import(captures, imported_url)
    listened_url = store_url(workdir / "listened.db")
    ring = workdir / "ring"
    with mirror_link() as mirror:
        tx_before = mirror.counters("tx")
        env = {"CYBERMISSION_DATABASE_URL": listened_url}
        options = ["--format", "json", "--filter", "tcp or udp", "--ring", str(ring)]
        with listening(mirror, env, workdir, *options) as run:
            sent = mirror.replay(captures)
            stdout, stderr = run.stop()
        tx_after = mirror.counters("tx")
    assert run.process.returncode == 0, stderr
    return Listened(
        mirror, sent, tx_before, tx_after, json.loads(stdout), listened_url, imported_url, ring
    )


def _import(captures: list[Path], url: str) -> None:
    """``import pcap`` of each file into the store at ``url``."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the CLI points logging at its runner
    for capture in captures:
        result = CliRunner().invoke(
            app, ["import", "pcap", str(capture), "--format", "json"],
            env={"CYBERMISSION_DATABASE_URL": url},
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
    root.handlers[:] = handlers
    root.setLevel(level)


def test_listen_finds_the_services_import_pcap_finds(listened: Listened) -> None:
    imported = _services(listened.imported_url)
    assert len(imported) >= len(CAPTURES)
    assert _services(listened.listened_url) == imported


def test_listen_finds_the_devices_import_pcap_finds(listened: Listened) -> None:
    devices = _devices(listened.listened_url)
    assert ("Siemens", None, "CPU 315-2 PN/DP", "S C-JNS406642017") in devices
    assert devices == _devices(listened.imported_url)


def _tcp_or_udp_frames() -> int:
    """Frames of the captures that the filter ``tcp or udp`` lets through (scapy dissects)."""
    count = 0
    for parts in CAPTURES:
        for frame in rdpcap(str(shared_data("pcaps", *parts))):
            count += TCP in frame or UDP in frame
    return count


def test_listen_reads_every_replayed_frame_its_filter_passes(listened: Listened) -> None:
    capture = listened.report["capture"]
    frames = sum(len(rdpcap(str(shared_data("pcaps", *parts)))) for parts in CAPTURES)
    assert listened.sent == frames
    assert capture["packets"] == _tcp_or_udp_frames() < frames
    assert capture["kernel_dropped"] == 0
    assert listened.report["scan"]["status"] == "succeeded"


def test_listen_sends_nothing_on_the_mirror(listened: Listened) -> None:
    assert listened.tx_before == (0, 0)
    assert listened.tx_after == (0, 0)


def test_listen_stores_the_communication_map(listened: Listened) -> None:
    engine = create_db_engine(listened.listened_url)
    with Session(engine) as session:
        rows = session.exec(select(Communication)).all()
    engine.dispose()
    s7 = {(r.client_address, r.function) for r in rows if r.protocol == "s7comm"}
    # s7_all.pcap holds a block download and a PLC stop besides the reads.
    assert {f for _, f in s7} >= {"read", "write", "program", "control", "diagnostic"}
    (plc,) = {r.server_device_id for r in rows if r.protocol == "s7comm"}
    assert plc is not None
    assert all(r.packets > 0 and r.first_seen_at <= r.last_seen_at for r in rows)


def test_listen_ring_files_import_to_what_listen_found(listened: Listened, tmp_path: Path) -> None:
    files = sorted(listened.ring.glob("*.pcap"))
    assert len(files) == listened.report["capture"]["ring_files"] == 1
    assert listened.report["capture"]["ring_frames"] == listened.report["capture"]["packets"]
    url = store_url(tmp_path / "from-ring.db")
    _import(files, url)
    assert _services(url) == _services(listened.listened_url)


def test_receive_only_socket_offers_no_way_to_send() -> None:
    require_mirror_tools()
    capture = ReceiveOnlySocket("lo", "udp port 9")
    try:
        offered = {name for name in dir(capture) if not name.startswith("_")}
        assert offered == {"fileno", "receive", "kernel_drops", "close"}
    finally:
        capture.close()


@pytest.mark.parametrize(
    ("interface", "bpf", "message"),
    [
        ("hp-none0", None, "no interface named"),
        ("../lo", None, "not an interface name"),
        ("lo", "tcp port nope", "is not a BPF filter"),
    ],
)
def test_listen_refuses_a_bad_interface_or_filter(
    interface: str, bpf: str | None, message: str
) -> None:
    require_mirror_tools()
    with pytest.raises(ValidationError, match=message):
        ReceiveOnlySocket(interface, bpf)


def test_listen_on_a_missing_interface_ends_its_run_failed(tmp_path: Path) -> None:
    url = store_url(tmp_path / "failed.db")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    result = CliRunner().invoke(
        app, ["listen", "hp-none0", "--format", "json"], env={"CYBERMISSION_DATABASE_URL": url}
    )
    root.handlers[:] = handlers
    root.setLevel(level)
    assert result.exit_code == 2
    assert "no interface named" in result.stderr
    engine = create_db_engine(url)
    with Session(engine) as session:
        (run,) = session.exec(select(ScanRun)).all()
    engine.dispose()
    assert run.status is ScanStatus.FAILED
    assert "no interface named" in run.errors[0]["error"]
