"""/metrics: Prometheus text format with scans, durations, devices and findings from the store."""

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from tests.api.world import build_world


async def test_metrics_reports_store_figures(anonymous: httpx.AsyncClient, engine: Engine) -> None:
    build_world(engine)
    response = await anonymous.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("cybermission_scans", (("status", "succeeded"),))] == 2
    assert samples[("cybermission_devices", (("protocol", "modbus"),))] == 2
    assert samples[("cybermission_devices_total", ())] == 2
    assert samples[("cybermission_findings", (("severity", "high"), ("status", "open")))] == 2
    # Both runs took 30 s: above the 15 s bucket, inside the 60 s one.
    assert samples[("cybermission_scan_duration_seconds_bucket", (("le", "15.0"),))] == 0
    assert samples[("cybermission_scan_duration_seconds_bucket", (("le", "60.0"),))] == 2
    assert samples[("cybermission_scan_duration_seconds_sum", ())] == 60.0
