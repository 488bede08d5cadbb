"""/metrics: names and types by Prometheus' rules, gauges read from the store, counters and the
duration histogram fed by real runs and never going down, OpenMetrics when the scraper asks."""

import asyncio
import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission import __version__
from cybermission.scans.models import ScanRun
from tests.api.routes.test_scans import CLOSED_ADDRESS, _follow
from tests.api.world import build_world

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scan(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/scans", json={"targets": [CLOSED_ADDRESS], "ports": [9]})
    assert response.status_code == 202, response.text
    assert (await _follow(client, response.headers["location"]))["status"] == "succeeded"


async def test_metrics_gauges_read_the_store(anonymous: httpx.AsyncClient, engine: Engine) -> None:
    build_world(engine)
    response = await anonymous.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.text)
    assert samples[("cybermission_devices", ())] == 2
    assert samples[("cybermission_devices_by_protocol", (("protocol", "modbus"),))] == 2
    assert samples[("cybermission_findings", (("severity", "high"), ("status", "open")))] == 2
    assert samples[("cybermission_scans_in_progress", (("status", "running"),))] == 0
    build = [k for k in samples if k[0] == "cybermission_build_info"]
    assert len(build) == 1
    assert ("version", __version__) in build[0][1]
    assert samples[build[0]] == 1


async def test_metrics_names_follow_the_type_rules(
    anonymous: httpx.AsyncClient, engine: Engine
) -> None:
    build_world(engine)
    families = list(text_string_to_metric_families((await anonymous.get("/metrics")).text))
    assert families
    for family in families:
        names = {s.name for s in family.samples}
        if family.type == "counter":
            assert names <= {f"{family.name}_total", f"{family.name}_created"}, family.name
        else:
            assert not family.name.endswith("_total"), family.name
    kinds = {f.name: f.type for f in families}
    assert kinds["cybermission_scans_started"] == "counter"
    assert kinds["cybermission_scans_finished"] == "counter"
    assert kinds["cybermission_alert_delivery_attempts"] == "counter"
    assert kinds["cybermission_scan_duration_seconds"] == "histogram"
    assert kinds["cybermission_devices"] == "gauge"


async def test_metrics_counters_and_histogram_grow_as_runs_finish(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, engine: Engine
) -> None:
    before = _samples((await anonymous.get("/metrics")).text)
    assert before[("cybermission_scans_started_total", ())] == 0
    assert before[("cybermission_scan_duration_seconds_count", ())] == 0
    scrapes = []
    for _ in range(2):
        await _scan(client)
        scrapes.append(_samples((await anonymous.get("/metrics")).text))
    first, second = scrapes
    succeeded = ("cybermission_scans_finished_total", (("status", "succeeded"),))
    assert [s[succeeded] for s in scrapes] == [1, 2]
    assert [s[("cybermission_scans_started_total", ())] for s in scrapes] == [1, 2]
    assert second[("cybermission_scan_duration_seconds_count", ())] == 2
    assert second[("cybermission_scan_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    for key, value in first.items():
        if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
            assert second[key] >= value, key
    with Session(engine) as session:
        runs = session.exec(select(ScanRun)).all()
        took = sum(_seconds(r.started_at, r.finished_at) for r in runs)
    assert second[("cybermission_scan_duration_seconds_sum", ())] == pytest.approx(took)


def _seconds(started: datetime | None, finished: datetime | None) -> float:
    assert started is not None
    assert finished is not None
    return (finished - started).total_seconds()


async def test_metrics_openmetrics_when_the_scraper_asks(
    anonymous: httpx.AsyncClient, engine: Engine
) -> None:
    build_world(engine)
    response = await anonymous.get("/metrics", headers={"Accept": OPENMETRICS})
    assert response.headers["content-type"].startswith(
        "application/openmetrics-text; version=1.0.0"
    )
    assert response.text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(response.text)}
    assert families["cybermission_build"].type == "info"
    assert families["cybermission_scans_started"].type == "counter"
    assert Sample("cybermission_scans_started_total", {}, 0.0) in (
        families["cybermission_scans_started"].samples
    )
    assert families["cybermission_devices"].samples[0].value == 2


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus not installed")
async def test_metrics_pass_promtool_check(anonymous: httpx.AsyncClient, engine: Engine) -> None:
    build_world(engine)
    text = (await anonymous.get("/metrics")).text
    checked = await asyncio.to_thread(
        subprocess.run,
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""


DASHBOARD = Path(__file__).parents[3] / "deploy" / "grafana-dashboard.json"
# Grafana's range variables, as Grafana substitutes them before Prometheus sees the query.
GRAFANA_RANGES = {"$__rate_interval": "1m", "$__range": "6h"}


def _dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queries = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    for variable, value in GRAFANA_RANGES.items():
        queries = [q.replace(variable, value) for q in queries]
    return queries


async def test_metrics_grafana_dashboard_reads_only_exposed_series(
    anonymous: httpx.AsyncClient, engine: Engine
) -> None:
    build_world(engine)
    exposed: set[str] = set()
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_sum", "_count"],
        "info": ["_info"],
    }
    text = (await anonymous.get("/metrics", headers={"Accept": OPENMETRICS})).text
    for family in openmetrics_families(text):
        exposed.update(family.name + s for s in suffixes.get(family.type, [""]))
    used = {name for q in _dashboard_queries() for name in re.findall(r"cybermission_\w+", q)}
    assert len(used) >= 10
    assert used - exposed == set()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus not installed")
async def test_metrics_grafana_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses every expression of a rules file: one recording rule per panel query.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": q}
                    for n, q in enumerate(_dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = await asyncio.to_thread(
        subprocess.run,
        ["promtool", "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
