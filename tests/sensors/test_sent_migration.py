"""Migration 0005_chunk_sent: a chunk stored with ``{"probe<TAB>request": n}`` keeps its counts in
the one form of requests sent, ``{"probe": {"request": n}}``."""

import json

from sqlalchemy import Engine, text

from cybermission.migrations import upgrade_database
from cybermission.probes import SentRequests

T = "2026-11-01 12:00:00"


def _chunk_sents(engine: Engine) -> dict[str, object]:
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT id, sent FROM chunk ORDER BY id")).all()
    return {r.id: json.loads(r.sent) if isinstance(r.sent, str) else r.sent for r in rows}


def test_flat_chunk_counts_become_the_runs_form(empty_engine: Engine) -> None:
    upgrade_database(empty_engine, "0002_sensors")
    with empty_engine.begin() as conn:
        conn.execute(
            text("INSERT INTO organization (id, slug, name, created_at) VALUES ('o1','a','A',:t)"),
            {"t": T},
        )
        conn.execute(
            text(
                "INSERT INTO site (id, organization_id, slug, name, timezone, created_at)"
                " VALUES ('s1', 'o1', 'a', 'A', 'UTC', :t)"
            ),
            {"t": T},
        )
        conn.execute(
            text(
                "INSERT INTO scan_run (id, status, targets, ports, udp_ports, requested_by,"
                " created_at, hosts_total, hosts_probed, open_ports, observations, findings,"
                " errors, sent) VALUES ('r1', 'running', '[]', '[]', '[]', 'test', :t,"
                " 0, 0, 0, 0, 0, '[]', '{}')"
            ),
            {"t": T},
        )
        for seq, sent in enumerate(('{"modbus\\tfc43/mei14/basic": 3, "s7\\tcotp": 1}', "{}")):
            conn.execute(
                text(
                    "INSERT INTO chunk (id, scan_run_id, site_id, seq, targets, hosts, not_after,"
                    " state, attempts, parts_done, hosts_swept, hosts_live, open_ports,"
                    " observations, findings, errors, sent) VALUES (:id, 'r1', 's1', :seq, '[]',"
                    " 0, :t, 'running', 0, 0, 0, 0, 0, 0, 0, '[]', :sent)"
                ),
                {"id": f"c{seq}", "seq": seq, "t": T, "sent": sent},
            )
    upgrade_database(empty_engine)
    sents = _chunk_sents(empty_engine)
    assert sents == {"c0": {"modbus": {"fc43/mei14/basic": 3}, "s7": {"cotp": 1}}, "c1": {}}
    assert SentRequests.from_json(sents["c0"]).of("modbus")["fc43/mei14/basic"] == 3

    upgrade_database(empty_engine, "0005_chunk_sent")  # at its revision: nothing changes twice
    assert _chunk_sents(empty_engine) == sents
