"""Cancelling a distributed run reaches the site (issue 10): on the machine's RabbitMQ and
PostgreSQL, with the sensor and the central worker as processes."""

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from cybermission.scans.models import ScanStatus
from cybermission.scans.ownership import cancel_unowned
from cybermission.sensors.models import ChunkPart, ChunkState
from cybermission.sensors.topology import SCAN_QUEUE, Management
from tests.sensors.conftest import Cluster, chunk_seq_of, chunks_of
from tests.timing import scaled


def _journal_states(path: Path) -> dict[str, str]:
    """The chunks the sensor's journal holds as finished, with their state."""
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT chunk_id, state FROM chunk").fetchall())


async def test_cancelled_run_stops_the_chunk_under_way_and_the_queued_ones_unprobed(
    cluster: Cluster, devices: Callable[..., Any], tmp_path: Path
) -> None:
    # The silent device holds a probe for the probe timeout: long here, so the chunk under way
    # can only end early because the cancel stopped it.
    pacing = cluster.settings.pacing.model_copy(update={"probe_timeout_s": scaled(15.0)})
    cluster.settings = cluster.settings.model_copy(update={"pacing": pacing})
    lab = await devices("127.30.10.0", misfits=True)
    by_name = {d.name: d for d in lab}
    a = cluster.site("a", ["127.30.10.0/26"])
    _, bundle = cluster.enroll(a)
    cluster.start_central()
    cluster.start_sensor(a, bundle)
    run_id = cluster.scan(a, chunk=8)
    chunks = chunks_of(cluster, run_id)
    silent = by_name["modbus-silent"]
    under_way = chunk_seq_of(chunks, silent.address)
    queued = [d for d in lab if chunk_seq_of(chunks, d.address) > under_way]
    assert queued  # the malformed and closing devices, in the chunk after
    await cluster.wait_for(lambda: silent.connections)
    # The chunks before are stored (a part still on its way when the run is cancelled is
    # refused: the cancel keeps what was stored, like the embedded mode's).
    await cluster.wait_for(
        lambda: all(c.state is ChunkState.DONE for c in chunks_of(cluster, run_id)[:under_way])
    )
    assert not any(d.connections or d.bytes_received for d in queued)

    # What the API and `scans cancel` do: nobody holds a lease on a distributed run, so the
    # request is recorded, and the centre honours it.
    assert cancel_unowned(cluster.engine, run_id, by="tester", lease_s=60.0) is None
    run = await cluster.wait_run(run_id)
    assert run.status is ScanStatus.CANCELLED
    assert run.reason == "cancelled by tester"

    # The sensor works through its queue: every chunk ends in its journal, none left queued.
    journal = tmp_path / f"journal-{a}.db"
    await cluster.wait_for(lambda: len(_journal_states(journal)) == len(chunks))
    with Management(cluster.settings.broker) as mgmt:
        await cluster.wait_for(lambda: mgmt.queue_depth(cluster.vhost(a), SCAN_QUEUE) == 0)
    states = _journal_states(journal)
    sensor_side = [states[c.id] for c in chunks]
    centre_side = [c.state for c in chunks_of(cluster, run_id)]
    assert sensor_side == ["done"] * under_way + ["cancelled"] * (len(chunks) - under_way)
    assert centre_side == [ChunkState.DONE] * under_way + [ChunkState.CANCELLED] * (
        len(chunks) - under_way
    )
    assert not any(d.connections or d.bytes_received for d in queued)
    with Session(cluster.engine) as session:
        parts = {p.chunk_id for p in session.exec(select(ChunkPart)).all()}
    assert parts == {c.id for c in chunks[:under_way]}  # nothing of a cancelled chunk applied
