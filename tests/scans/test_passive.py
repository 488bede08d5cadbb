"""Passive discovery from real captures: assets built, not a packet sent."""

import os
import socket
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import Settings
from cybermission.errors import ValidationError
from cybermission.inventory.models import Device, Service
from cybermission.scans.models import ObservationRecord, ScanRun, ScanStatus
from cybermission.scans.ownership import this_process
from cybermission.scans.passive import load_capture_reader, passive_decoders
from cybermission.scans.pipeline import import_observations
from tests.conftest import shared_data


def _import(engine: Engine, settings: Settings, path: Path) -> str:
    reader = load_capture_reader("pcap")
    run = import_observations(
        engine=engine,
        settings=settings,
        source=f"pcap:{path.name}",
        observations=reader.observations(path, passive_decoders()),
    )
    assert run.status is ScanStatus.SUCCEEDED
    return run.id


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    """Any socket opened during the import fails the test: passive means nothing sent."""

    for method in ("connect", "connect_ex", "send", "sendto", "sendmsg"):
        original = getattr(socket.socket, method)

        def refuse(
            sock: socket.socket, *args: object, _original: object = original, **kwargs: object
        ) -> object:
            # Netlink (the kernel's routing table, read by scapy) is not the network.
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                raise AssertionError("passive import used an IP socket")
            return _original(sock, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(socket.socket, method, refuse)


def test_import_pcap_builds_the_modbus_asset_of_a_real_capture(
    engine: Engine, settings: Settings, no_network: None
) -> None:
    run_id = _import(engine, settings, shared_data("pcaps", "modbus", "mod_17.pcap"))
    with Session(engine) as session:
        services = session.exec(select(Service).where(Service.protocol == "modbus")).all()
        observations = session.exec(
            select(ObservationRecord).where(ObservationRecord.scan_run_id == run_id)
        ).all()
    (service,) = services
    assert service.port == 502
    assert service.facts["server_id"] == "Wingpath Limited"
    assert service.facts["passive"] is True
    assert {o.probe for o in observations} >= {"passive:modbus"}


# What importing each protocol's capture must store (MANIFEST.md's table, values decoded).
IDENTITIES = [
    (("s7", "s7_all.pcap"), 102, "s7comm", {"system_name": "SIMATIC 300(1)"}),
    (("s7", "s7_all.pcap"), 102, "s7comm", {"serial": "S C-JNS406642017"}),
    (("s7", "s7_all.pcap"), 102, "s7comm", {"order_number": "6ES7 315-2EH14-0AB0"}),
    (("melsec-q", "melsecq_tcp.pcapng"), 5007, "melsec", {"model": "Q03UDECPU"}),
    (("melsec-q", "melsecq_udp.pcapng"), 5006, "melsec", {"model": "Q03UDECPU"}),
    (("bacnet", "bacnet.pcap"), 47808, "bacnet", {"model": "Simple BACnet Server"}),
    (("opcua", "opcua.pcap"), 12001, "opcua", {"anonymous_allowed": True}),
    (("enip", "cip.pcap"), 44818, "enip", {"product_name": "1756-L71/B LOGIX5571"}),
    (("iec104", "iec104.pcap"), 2404, "iec104", {"startdt_confirmed": True, "common_address": 10}),
    (("dnp3", "read_and_response.pcap"), 20000, "dnp3", {"outstation_address": 10}),
    (("iec61850", "piccolo.pcap"), 102, "mms", {"vendor": "INFO TECH", "model": "S61850 for PC"}),
    (("fins", "fins.pcap"), 9600, "fins", {"model": "AAAAAAAAAAAAAAAAAAAA"}),
]


@pytest.mark.parametrize(
    ("capture", "port", "protocol", "expected"),
    IDENTITIES,
    ids=[f"{c[-1]}:{next(iter(e))}" for c, _, _, e in IDENTITIES],
)
def test_import_pcap_stores_the_identity_a_capture_holds(
    engine: Engine,
    settings: Settings,
    no_network: None,
    capture: tuple[str, ...],
    port: int,
    protocol: str,
    expected: dict[str, object],
) -> None:
    _import(engine, settings, shared_data("pcaps", *capture))
    with Session(engine) as session:
        services = session.exec(
            select(Service).where(Service.protocol == protocol, Service.port == port)
        ).all()
    assert len(services) == 1
    assert {key: services[0].facts.get(key) for key in expected} == expected
    assert services[0].facts["passive"] is True


def test_import_pcap_s7_capture_builds_a_device_with_its_serial(
    engine: Engine, settings: Settings, no_network: None
) -> None:
    _import(engine, settings, shared_data("pcaps", "s7", "s7_all.pcap"))
    with Session(engine) as session:
        serials = {device.serial for device in session.exec(select(Device)).all()}
    assert "S C-JNS406642017" in serials


def test_import_pcap_every_shared_capture_imports_without_error(
    engine: Engine, settings: Settings, no_network: None
) -> None:
    root = shared_data("pcaps")
    captures = sorted(p for p in root.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))
    assert captures
    for capture in captures:
        _import(engine, settings, capture)
    with Session(engine) as session:
        assert session.exec(select(Device)).first() is not None


def test_import_pcap_refuses_a_file_that_is_not_a_capture(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("not a capture")
    reader = load_capture_reader("pcap")
    with pytest.raises(ValidationError, match="not a pcap"):
        list(reader.observations(bogus, passive_decoders()))


def test_an_import_owns_its_run_so_a_killed_import_does_not_stay_running(
    engine: Engine, settings: Settings
) -> None:
    """Like a listening session, an import claims its run: were the process killed while it
    records, the reaper would find the owner gone and close the run interrupted."""
    run_id = _import(engine, settings, shared_data("pcaps", "modbus", "mod_17.pcap"))
    with Session(engine) as session:
        run = session.get(ScanRun, run_id)
    assert run is not None
    assert (run.owner_host, run.owner_pid) == (this_process().host, os.getpid())
