"""Every registered probe loads and declares what the safety model needs."""

from importlib.metadata import entry_points

import pytest

from cybermission.probes import (
    IdentityAuthority,
    Intrusiveness,
    Probe,
    SentRequests,
    Transport,
    identity_authority,
    load_probes,
)
from scanners.modbus import ModbusProbe

ENTRY_POINTS = sorted(entry_points(group="cybermission.probes"), key=lambda e: e.name)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=[e.name for e in ENTRY_POINTS])
def test_probe_entry_point_loads_a_complete_probe(entry: object) -> None:
    probe = entry.load()()  # type: ignore[attr-defined]
    assert isinstance(probe, Probe)
    assert probe.name == entry.name  # type: ignore[attr-defined]
    assert probe.default_ports
    assert isinstance(probe.order, int)
    assert isinstance(probe.authority, IdentityAuthority)
    assert probe.transport in (Transport.TCP, Transport.UDP)
    # A TCP probe may send nothing and only read a greeting (SSH); a UDP probe must ask.
    assert probe.manifest.entries or probe.transport is Transport.TCP
    assert all(e.max_per_device >= 1 for e in probe.manifest.entries)
    connections = probe.manifest.connections_per_device
    if probe.transport is Transport.UDP:
        assert connections <= 1  # datagrams: no connection, or one session socket
    else:
        # One at a time always (the pipeline runs a device's probes in sequence); more than one
        # in all only for documented fallbacks (S7's TSAP pairs), said in the notes.
        assert 1 <= connections <= 3
        assert connections == 1 or probe.manifest.notes
    if probe.intrusiveness is Intrusiveness.ACTIVE:
        assert probe.optional, "active probes only run when a scope opts in"


def test_load_probes_finds_every_entry_point() -> None:
    assert set(load_probes()) == {e.name for e in ENTRY_POINTS}


PROBE_MEMBERS = (
    "name",
    "protocol",
    "default_ports",
    "transport",
    "intrusiveness",
    "manifest",
    "optional",
    "order",
    "authority",
    "observe",
)


@pytest.mark.parametrize("member", ["order", "authority"])
def test_probe_protocol_requires_the_member(member: str) -> None:
    members = {name: getattr(ModbusProbe, name) for name in PROBE_MEMBERS}
    assert isinstance(type("Complete", (), members)(), Probe)
    del members[member]
    assert not isinstance(type("Lacking", (), members)(), Probe)


def test_identity_authority_ranks_device_over_management_over_banner() -> None:
    ranks = [a.rank for a in (IdentityAuthority.DEVICE, IdentityAuthority.MANAGEMENT)]
    assert ranks[0] > ranks[1] > IdentityAuthority.BANNER.rank


def test_identity_authority_of_a_passive_observation_is_its_decoders() -> None:
    probes = load_probes()
    assert identity_authority("passive:modbus", probes) is IdentityAuthority.DEVICE
    assert identity_authority("snmp", probes) is IdentityAuthority.MANAGEMENT
    assert identity_authority("ftp", probes) is IdentityAuthority.BANNER
    assert identity_authority("tcp-connect", probes) is None


LAB_ENTRY_POINTS = sorted(entry_points(group="cybermission.lab"), key=lambda e: e.name)


@pytest.mark.parametrize("entry", LAB_ENTRY_POINTS, ids=[e.name for e in LAB_ENTRY_POINTS])
def test_lab_entry_point_loads_devices_on_loopback(entry: object) -> None:
    devices = entry.load()("127.0.10.0")  # type: ignore[attr-defined]
    assert devices
    assert all(d.address.startswith("127.") for d in devices)


def test_sent_requests_add_up_per_probe_and_request_and_round_trip_their_json() -> None:
    host = SentRequests()
    host.of("modbus").update({"fc43/mei14/basic": 1})
    other = SentRequests()
    other.of("modbus")["fc43/mei14/basic"] += 2
    other.of("s7")["cotp"] += 1
    other.of("enip")  # a probe that sent nothing leaves no trace
    host.add(other)
    assert host.to_json() == {"modbus": {"fc43/mei14/basic": 3}, "s7": {"cotp": 1}}
    assert SentRequests.from_json(host.to_json()) == host
    assert not SentRequests()
    assert host


@pytest.mark.parametrize(
    "data",
    [[["modbus", "fc43", 1]], {"modbus": 3}, {"modbus": {"fc43": "3"}}, {"modbus": {"fc43": -1}}],
    ids=["list", "no-requests", "text-count", "negative"],
)
def test_sent_requests_refuse_another_shape_by_name(data: object) -> None:
    with pytest.raises(TypeError, match="sent"):
        SentRequests.from_json(data)
