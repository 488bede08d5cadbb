"""Tests of the page and banner fingerprint table: its schema check, its examples, page bodies.

The page bodies below are rebuilt from what public fingerprint collections record of real devices
(titles, Server headers, portal paths, the NPort console block); they are not captures (none of the
shared captures holds an HMI page), so each test says which identifying part it relies on.
"""

import pytest

from cybermission.errors import ValidationError
from cybermission.probes import IDENTITY_FACT_KEYS
from scanners.fingerprints import (
    Fingerprint,
    FingerprintKind,
    fingerprint_facts,
    load_fingerprints,
    parse_table,
)
from scanners.http import HttpResponse, page_facts

TABLE = load_fingerprints()

VALID = """
- id: acme-hmi
  kind: device
  authority: banner
  protocols: [http]
  match: {title: 'ACME (?P<model>HMI-\\d+)'}
  facts: {vendor: ACME, model: '{model}'}
  examples:
    - fields: {title: 'ACME HMI-7'}
      facts: {vendor: ACME, model: HMI-7}
"""


@pytest.mark.parametrize("fingerprint", TABLE, ids=[f.id for f in TABLE])
def test_fingerprint_examples_give_their_facts(fingerprint: Fingerprint) -> None:
    for example in fingerprint.examples:
        protocol = sorted(fingerprint.protocols)[0]
        facts = fingerprint_facts(protocol, example.fields, [fingerprint])
        facts.pop("fingerprint", None)
        assert facts == dict(example.facts)


def test_fingerprints_of_an_os_or_a_program_state_no_device_identity() -> None:
    for fingerprint in TABLE:
        if fingerprint.kind is not FingerprintKind.DEVICE:
            assert not set(IDENTITY_FACT_KEYS) & set(fingerprint.facts), fingerprint.id
        assert fingerprint.authority == "banner"


def test_fingerprint_table_parses_a_valid_entry() -> None:
    (entry,) = parse_table(VALID)
    assert fingerprint_facts("http", {"title": "acme hmi-7"}, [entry]) == {
        "vendor": "ACME",
        "model": "hmi-7",
        "fingerprint": "acme-hmi",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("kind: device", "kind: os"), "a os fingerprint states only"),
        (("authority: banner", "authority: device"), "authority"),
        (("[http]", "[gopher]"), "protocols"),
        (("{title:", "{banner:"), "field 'banner'"),
        (("(?P<model>HMI", "(?P<model>(?=HMI)"), "RE2"),
        (("'{model}'", "'{firmware}'"), "no pattern has a group named 'firmware'"),
        (("  examples:", "  colour: red\n  examples:"), "unknown keys"),
        (("id: acme-hmi", "id: Acme HMI"), "kebab-case"),
    ],
)
def test_fingerprint_table_refuses_a_bad_entry(change: tuple[str, str], message: str) -> None:
    bad = VALID.replace(*change)
    assert bad != VALID
    with pytest.raises(ValidationError, match=message):
        parse_table(bad)


def test_fingerprint_table_refuses_duplicate_ids() -> None:
    with pytest.raises(ValidationError, match="duplicate id"):
        parse_table(VALID + VALID)


def _page(body: str, **headers: str) -> dict[str, object]:
    response = HttpResponse(200, "OK", headers, body.encode("latin-1"), truncated=False)
    return dict(page_facts(response))


def test_page_s7_1500_portal_names_siemens() -> None:
    # S7-1200/1500 web servers answer / with their portal (/Portal/Portal.mwsl).
    facts = _page(
        "<html><head><title>S7-1500 station_1/PLC_1</title>"
        '<meta http-equiv="refresh" content="0; URL=/Portal/Portal.mwsl?PriNav=Start">'
        "</head><body></body></html>"
    )
    assert (facts["vendor"], facts["product"], facts["fingerprint"]) == (
        "Siemens",
        "SIMATIC S7-1500",
        "siemens-s7-web",
    )


def test_page_modicon_m340_ethernet_module_names_the_cpu() -> None:
    # Schneider Ethernet modules send "Schneider-WEB/V..." and list the rack's modules.
    facts = _page(
        "<html><head><title>Web server</title></head><body><table><tr><td>Modicon M340</td>"
        "<td>BMX P34 2020</td><td>V2.5</td></tr><tr><td>BMX NOE 0100</td></tr></table></body>",
        server="Schneider-WEB/V2.1.4",
    )
    assert (facts["vendor"], facts["product"], facts["model"]) == (
        "Schneider Electric",
        "Modicon M340",
        "BMX P34 2020",
    )
    assert facts["software"] == "Schneider-WEB/V2.1.4"  # the web server, not the PLC's firmware
    assert "firmware" not in facts


def test_page_niagara_server_header_gives_the_station_version() -> None:
    facts = _page(
        "<html><head><title>Niagara Web Login</title></head>"
        '<body><form action="/prelogin" method="post"></form></body></html>',
        server="Niagara Web Server/3.8.38",
    )
    assert (facts["vendor"], facts["product"], facts["firmware"]) == (
        "Tridium",
        "Niagara",
        "3.8.38",
    )


def test_page_served_by_an_embedded_web_server_names_no_device() -> None:
    # The trap of issue 12 on the web: the server program is no vendor, product or firmware.
    facts = _page("<html><title>Login</title></html>", server="WindRiver-WebServer/4.4")
    assert (facts["software"], facts["software_vendor"]) == (
        "WindRiver-WebServer 4.4",
        "Wind River",
    )
    assert not set(IDENTITY_FACT_KEYS) & set(facts)


def test_page_that_only_mentions_a_vendor_is_not_that_vendors_device() -> None:
    # A plant's own page linking to suppliers: markers found anywhere once made it a WAGO/Moxa HMI.
    facts = _page(
        "<html><head><title>Pump station 3</title></head><body>Spare parts: WAGO 750-881, "
        "MOXA NPort 5110, Niagara supervisor at the depot.</body></html>",
        server="lighttpd/1.4.59",
    )
    assert "fingerprint" not in facts
    assert not set(IDENTITY_FACT_KEYS) & set(facts)
