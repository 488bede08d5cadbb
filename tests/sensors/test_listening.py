"""A site sensor that listens (issue 16, "and the same in a site sensor"): real captures replayed
with tcpreplay onto a veth pair between namespaces this test makes, the sensor in one of them
reaching the machine's RabbitMQ through a loopback port forwarded into it, the central ingest
worker on PostgreSQL. The centre must record what ``import pcap`` finds in the same files, inside
the site's networks only, with the communication map, and the sensor must send nothing on the
mirror."""

import ipaddress
import json
import logging
import signal
import subprocess
import uuid
from pathlib import Path

from sqlmodel import Session, select
from typer.testing import CliRunner

from cybermission.cli import app
from cybermission.db import create_db_engine
from cybermission.inventory.communications import Communication
from cybermission.inventory.models import Service
from cybermission.scans.host_messages import ObservationMessage
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.sensors.broker import TRAFFIC_TASK, publish_task
from cybermission.sensors.messages import TrafficBatch, write_message
from cybermission.sensors.models import ListenSession, RejectedPart, RejectionReason
from cybermission.sensors.topology import RESULTS
from cybermission.sites.models import Site
from cybermission.sites.service import get_site_or_raise
from tests.cli.stores import store_url
from tests.conftest import shared_data
from tests.mirror import Mirror, _has_packet_socket, mirror_link, require_mirror_tools
from tests.netns_port import port_inside
from tests.sensors.conftest import CLI, ROOT, Cluster
from tests.timing import scaled

# The site's network holds the S7 and BACnet captures' hosts (192.168.0.x); the Modbus capture's
# (10.0.0.x) is another network the mirror also carries: it must stay at the site.
SITE_NET = "192.168.0.0/24"
CAPTURES = [("modbus", "mod_17.pcap"), ("s7", "s7_all.pcap"), ("bacnet", "bacnet.pcap")]

Row = tuple[object, ...]


def _services(url: str) -> set[Row]:
    engine = create_db_engine(url)
    with Session(engine) as session:
        found = {
            (s.address, s.port, s.transport, s.protocol, json.dumps(s.facts, sort_keys=True))
            for s in session.exec(select(Service)).all()
        }
    engine.dispose()
    return found


def _imported(captures: list[Path], workdir: Path) -> set[Row]:
    """What ``import pcap`` of the same files finds (an embedded SQLite store)."""
    url = store_url(workdir / "imported.db")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the CLI points logging at its runner
    for capture in captures:
        result = CliRunner().invoke(
            app,
            ["import", "pcap", str(capture), "--format", "json"],
            env={"CYBERMISSION_DATABASE_URL": url},
        )
        assert result.exit_code == 0, result.stderr
    root.handlers[:] = handlers
    root.setLevel(level)
    return _services(url)


def _inside(address: object) -> bool:
    return ipaddress.ip_address(str(address)) in ipaddress.ip_network(SITE_NET)


def _start_listening_sensor(cluster: Cluster, mirror: Mirror, slug: str, bundle: Path) -> None:
    command = [*CLI, "sensor", "--site", slug, "--bundle", str(bundle)]
    command += ["--journal", str(cluster.tmp / "journal.db"), "--listen", mirror.sensor_interface]
    command += ["--filter", "tcp or udp", "--flush-every", "0.5", "--ring", str(cluster.tmp)]
    with (cluster.tmp / "sensor.log").open("ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", mirror.sensor_namespace, *command],
            cwd=ROOT,
            env=cluster.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    cluster.procs.append(proc)


async def test_listening_sensor_ships_what_import_pcap_finds_inside_its_site(
    cluster: Cluster, tmp_path: Path
) -> None:
    require_mirror_tools()
    captures = [shared_data("pcaps", *parts) for parts in CAPTURES]
    imported = _imported(captures, tmp_path)
    slug = cluster.site("l", [SITE_NET])
    _, bundle = cluster.enroll(slug)
    cluster.start_central()
    with mirror_link() as mirror, port_inside(mirror.sensor_namespace, "127.0.0.1", 5672):
        _start_listening_sensor(cluster, mirror, slug, bundle)
        await cluster.wait_for(lambda: _has_packet_socket(mirror.sensor_namespace))
        sent = mirror.replay(captures)
        sensor = cluster.procs[-1]
        sensor.send_signal(signal.SIGTERM)  # its last batch carries the session's totals
        with Session(cluster.engine) as session:
            site_id = get_site_or_raise(session, slug=slug).id
        listening = await cluster.wait_for(lambda: _session_of(cluster, site_id))
        run = await cluster.wait_run(listening.scan_run_id)
        sensor.wait(timeout=scaled(60))
        tx = mirror.counters("tx")
    assert sent > 0
    assert sensor.returncode == 0, cluster.logs()
    assert run.status is ScanStatus.SUCCEEDED, run.errors
    assert run.site_id == site_id
    assert tx == (0, 0)  # the sensor sent nothing on the mirror
    # What it captured stays on the site, in its ring files, for a later import.
    assert list(cluster.tmp.glob(f"{mirror.sensor_interface}-*.pcap"))
    centre = _services(cluster.settings.database_url)
    expected = {row for row in imported if _inside(row[0])}
    assert {row[0] for row in imported} - {row[0] for row in expected}  # the capture has others
    assert expected
    assert centre == expected
    with Session(cluster.engine) as session:
        talks = session.exec(select(Communication).where(Communication.site_id == site_id)).all()
        assert any(c.protocol == "s7comm" and c.server_address == "192.168.0.3" for c in talks), [
            (c.server_address, c.protocol) for c in talks
        ]
        assert all(_inside(c.server_address) for c in talks)
        all_talks = session.exec(select(Communication)).all()
        assert len(all_talks) == len(talks)


def _session_of(cluster: Cluster, site_id: str) -> ListenSession | None:
    with Session(cluster.engine) as session:
        return session.exec(select(ListenSession).where(ListenSession.site_id == site_id)).first()


async def test_traffic_batch_naming_an_address_outside_the_site_is_rejected(
    cluster: Cluster,
) -> None:
    slug = cluster.site("f", [SITE_NET])
    _, bundle = cluster.enroll(slug)
    cluster.start_central()
    url = str(cluster.bundle(bundle)["broker_url"])
    seen = ObservationMessage.model_validate(
        {
            "probe": "modbus",
            "protocol": "modbus",
            "address": "10.0.0.3",  # not the site's
            "port": 502,
            "transport": "tcp",
            "facts": {"vendor": "Forged"},
            "observed_at": "2026-12-03T12:00:00+00:00",
        }
    )
    batch = TrafficBatch(
        session_id=uuid.uuid4().hex, seq=0, interface="eth9", observations=[seen], last=True
    )
    publish_task(
        url,
        exchange=RESULTS,
        routing_key=RESULTS,
        task_name=TRAFFIC_TASK,
        args=[write_message(batch)],
        task_id=str(uuid.uuid4()),
        timeout_s=scaled(5),
    )
    with Session(cluster.engine) as session:
        site = session.exec(select(Site).where(Site.slug == slug)).one()

    def rejected() -> list[RejectedPart]:
        with Session(cluster.engine) as session:
            return list(
                session.exec(select(RejectedPart).where(RejectedPart.site_id == site.id)).all()
            )

    rows = await cluster.wait_for(rejected)
    assert [r.reason for r in rows] == [RejectionReason.FOREIGN]
    assert "10.0.0.3" in rows[0].detail
    with Session(cluster.engine) as session:
        assert session.exec(select(Service).where(Service.address == "10.0.0.3")).all() == []
        assert session.exec(select(ScanRun).where(ScanRun.site_id == site.id)).all() == []


def test_sensor_told_to_listen_on_a_missing_interface_stops_saying_why(
    cluster: Cluster,
) -> None:
    slug = cluster.site("m", [SITE_NET])
    _, bundle = cluster.enroll(slug)
    command = [*CLI, "sensor", "--site", slug, "--bundle", str(bundle), "--listen", "hp-none0"]
    result = subprocess.run(
        [*command, "--journal", str(cluster.tmp / "journal.db")],
        cwd=ROOT,
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "no interface named 'hp-none0'" in result.stderr
