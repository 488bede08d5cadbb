"""Tests of the HTTP/HTTPS probe against canned web HMIs (one self-signed TLS) and misfits."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from cybermission.probes import RequestLedger
from scanners.http import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_VALUE_BYTES,
    REQUEST_GET,
    HttpProbe,
    HttpResponse,
    decode_chunked,
    page_facts,
    parse_head,
    read_response,
)
from scanners.lab.building_devices import SimDevice, http_lab_devices
from scanners.stream import ProbeStream
from tests.scanners.building_fixtures import (
    TargetFactory,
    assert_read_only,
    run_devices,
    target_factory,
)
from tests.timing import scaled

TIMEOUT_S = scaled(2.0)
BASE = "127.23.4.0"


@pytest.fixture
def building_target() -> TargetFactory:
    return target_factory()


@pytest.fixture
async def http_lab() -> AsyncIterator[dict[str, SimDevice]]:
    devices = http_lab_devices(BASE, port=18080, tls_port=18443, misfits=True)
    async for started in run_devices(devices):
        yield started


def _options(device: SimDevice) -> dict[str, object]:
    return {"tls": device.identity.get("tls") is True}


@pytest.mark.parametrize("name", ["http-hmi-s7", "https-niagara"])
async def test_http_probe_identifies_web_hmi(
    http_lab: dict[str, SimDevice], building_target: TargetFactory, name: str
) -> None:
    device, probe = http_lab[name], HttpProbe()
    target = building_target(device, probe, _options(device))
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity


async def test_http_probe_reads_the_self_signed_certificate(
    http_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = http_lab["https-niagara"], HttpProbe()
    observation = await probe.observe(
        building_target(device, probe, {"tls": True}), timeout_s=scaled(2)
    )
    assert observation is not None
    facts = observation.facts
    assert facts["cert_subject"] == "O=Metro Water Lab,CN=bms-north.metro.lab"
    assert facts["cert_issuer"] == facts["cert_subject"]
    assert str(facts["tls_version"]).startswith("TLSv1.")
    not_after = datetime.fromisoformat(str(facts["cert_not_after"]))
    assert not_after > datetime.now(UTC)


@pytest.mark.parametrize("name", ["http-hmi-s7", "https-niagara"])
async def test_http_probe_sends_only_one_get(
    http_lab: dict[str, SimDevice], building_target: TargetFactory, name: str
) -> None:
    device, probe = http_lab[name], HttpProbe()
    target = building_target(device, probe, _options(device))
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    assert device.requests == [REQUEST_GET]
    assert_read_only(device, probe, target)


def test_http_page_facts_bound_title_and_find_password_inputs() -> None:
    body = b"<title>" + b"Evil\x1b[31m" * 200 + b"</title><INPUT TYPE=password name=p>"
    facts = page_facts(HttpResponse(200, "OK", {}, body, truncated=False))
    title = facts["title"]
    assert isinstance(title, str)
    assert len(title) <= MAX_VALUE_BYTES
    assert title.isprintable()
    assert facts["has_login_form"] is True


def test_http_decoder_dechunks_and_reports_redirects() -> None:
    assert decode_chunked(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n") == (b"Wikipedia", True)
    status, _, headers = parse_head(b"HTTP/1.1 302 Found\r\nLocation: https://plc/login")
    facts = page_facts(HttpResponse(status, "Found", headers, b"", truncated=False))
    assert facts["location"] == "https://plc/login"


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_http_decoder_fuzz_only_raises_protocol_error(data: bytes) -> None:
    async def decode() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"HTTP/1.1 200 OK\r\n" + data)
        reader.feed_eof()
        # Reads never touch the writer; the ledger is never asked.
        stream = ProbeStream(
            reader,
            cast(asyncio.StreamWriter, None),
            ledger=RequestLedger("http", HttpProbe.manifest),
            address="fuzz",
            max_read_bytes=MAX_HEADER_BYTES + MAX_BODY_BYTES + 1,
        )
        try:
            response = await read_response(stream)
        except ProbeProtocolError:
            return
        for value in page_facts(response).values():
            if isinstance(value, str):
                assert len(value) <= MAX_VALUE_BYTES
                assert value.isprintable()

    asyncio.run(decode())
