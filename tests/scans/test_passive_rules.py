"""Passive rules: what clients were seen asking (the communication map) judged by the shipped
``traffic`` rules, from real captures and from a capture this test writes."""

from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import Settings
from cybermission.findings.models import Finding
from cybermission.inventory.communications import Communication, RecordedCommunication
from cybermission.inventory.models import IPAddress
from cybermission.scans.judging import traffic_subject
from cybermission.scans.passive import load_capture_reader, passive_decoders
from cybermission.scans.pipeline import import_observations
from cybermission.scans.placement import Placement
from cybermission.traffic import Conversation
from tests.conftest import shared_data


def _import(engine: Engine, settings: Settings, path: Path) -> None:
    conversations: list[Conversation] = []
    observations = load_capture_reader("pcap").observations(
        path, passive_decoders(), conversations=conversations
    )
    import_observations(
        engine=engine,
        settings=settings,
        source=f"pcap:{path.name}",
        observations=observations,
        conversations=conversations,
    )


def _findings_at(engine: Engine, address: str) -> dict[str, Finding]:
    with Session(engine) as session:
        device_id = session.exec(
            select(IPAddress.device_id).where(IPAddress.address == address)
        ).one()
        rows = session.exec(select(Finding).where(Finding.device_id == device_id)).all()
    return {f.rule_id: f for f in rows}


def test_passive_rules_flag_the_program_download_of_a_real_capture(
    engine: Engine, settings: Settings
) -> None:
    _import(engine, settings, shared_data("pcaps", "s7", "s7_all.pcap"))
    found = _findings_at(engine, "192.168.0.3")
    change = found["traffic-change-from-new-client"]
    assert change.evidence["fields"]["facts.function"] in ("write", "program", "control")
    assert "traffic-new-talker-to-controller" in found
    assert "traffic-cleartext-credentials" not in found


def test_passive_rules_leave_a_read_only_client_alone(engine: Engine, settings: Settings) -> None:
    _import(engine, settings, shared_data("pcaps", "modbus", "modbus_1.pcap"))
    with Session(engine) as session:
        functions = {c.function for c in session.exec(select(Communication))}
        rules = {f.rule_id for f in session.exec(select(Finding))}
    assert functions == {"read"}
    assert "traffic-change-from-new-client" not in rules
    assert "traffic-new-talker-to-controller" in rules


def _ftp_login(path: Path) -> None:
    """A client logging in to an FTP server in clear text (the server's greeting names it)."""
    server, client = "127.50.9.1", "127.50.9.2"
    frames = [
        Ether() / IP(src=server, dst=client) / TCP(sport=21, dport=40000, flags="SA", seq=100),
        Ether() / IP(src=server, dst=client)
        / TCP(sport=21, dport=40000, flags="PA", seq=101, ack=1)
        / Raw(b"220 ProFTPD Server (PLC gateway) ready\r\n"),
        Ether() / IP(src=client, dst=server)
        / TCP(sport=40000, dport=21, flags="PA", seq=1, ack=140) / Raw(b"USER maint\r\n"),
        Ether() / IP(src=client, dst=server)
        / TCP(sport=40000, dport=21, flags="PA", seq=13, ack=140) / Raw(b"PASS s3cret\r\n"),
    ]  # fmt: skip
    wrpcap(str(path), frames)


def test_passive_rules_flag_a_login_in_clear_text(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    capture = tmp_path / "ftp-login.pcap"
    _ftp_login(capture)
    _import(engine, settings, capture)
    finding = _findings_at(engine, "127.50.9.1")["traffic-cleartext-credentials"]
    assert finding.evidence["fields"]["facts.function"] == "login"
    with Session(engine) as session:
        (row,) = session.exec(select(Communication).where(Communication.function == "login"))
    assert (row.client_address, row.port, row.protocol, row.packets) == ("127.50.9.2", 21, "ftp", 2)


def _placed(zone: str, exposure: str) -> Placement:
    return Placement("org", "site-1", "plant-a", f"zone-{zone}", zone, exposure)


def test_traffic_subject_crosses_zones_only_when_both_ends_are_placed() -> None:
    row = Communication(
        client_address="10.9.0.5",
        server_address="10.1.0.7",
        port=502,
        transport="tcp",
        protocol="modbus",
        function="read",
        packets=1,
        first_seen_at=None,  # type: ignore[arg-type]  # not read by the document
        last_seen_at=None,  # type: ignore[arg-type]
    )
    recorded = RecordedCommunication(row, new=True, new_talker=True)
    asset = {"zone": "cell", "zone_exposure": "control", "site": "plant-a"}
    office = traffic_subject(recorded, _placed("office", "enterprise"), asset)["facts"]
    assert office["crosses_zone"] is True
    assert office["client_zone_exposure"] == "enterprise"
    same = traffic_subject(recorded, _placed("cell", "control"), asset)["facts"]
    assert same["crosses_zone"] is False
    assert traffic_subject(recorded, None, asset)["facts"]["crosses_zone"] is False
