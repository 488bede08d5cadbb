"""Family knowledge (families.yaml): it loads, each entry is well formed, and it decides right."""

import re
from pathlib import Path

import pytest

from cybermission.findings.advisories.families import (
    family_book,
    load_families,
    overlay,
    parse_families,
)


def _family(vendor: str, names: tuple[str, ...]) -> set[str]:
    return {f.name for f in family_book().of(vendor, names)}


def test_families_every_entry_has_a_source_and_names() -> None:
    book = family_book()
    assert len(book.families) >= 40
    assert len({f.vendor for f in book.families}) >= 21
    for family in book.families:
        assert family.names, family.name
        assert family.source.strip(), family.name


# The 20 vendors that name the most advisories of the archive (vendor branches of the product
# trees, counted once per advisory, keys folded by vendor_key; OSIsoft ties Yokogawa for 20th):
# each has family knowledge.
TOP_VENDORS = (
    "siemens",
    "rockwell automation",
    "schneider electric",
    "mitsubishi electric",
    "delta electronics",
    "hitachi energy",
    "advantech",
    "johnson controls",
    "ge",
    "philips",
    "abb",
    "moxa",
    "omron",
    "emerson",
    "fuji electric",
    "phoenix contact",
    "honeywell",
    "becton dickinson bd",
    "aveva software",
    "yokogawa",
    "osisoft",
)


def test_families_cover_the_most_frequent_vendors_of_the_archive() -> None:
    published = {v for f in family_book().families for v in f.vendors}
    assert [v for v in TOP_VENDORS if v not in published] == []


def test_families_of_the_added_vendors_cite_their_advisories() -> None:
    # Each entry of the vendors added for issue 13 cites the advisories of the archive its
    # membership and names are read from.
    added = set(TOP_VENDORS[4:]) - {"hitachi energy", "ge", "abb", "omron", "emerson"}
    added -= {"phoenix contact", "honeywell", "yokogawa"}
    for family in family_book().families:
        if family.vendor in added:
            assert re.search(r"ICSM?A-\d\d-\d{3}-\d\d", family.source), family.name


@pytest.mark.parametrize(
    ("vendor", "names", "family"),
    [
        ("siemens", ("6ES7 511-1AK02-0AB0",), "SIMATIC S7-1500 CPU"),
        ("rockwell automation", ("1756-L85E/B",), "ControlLogix 5580"),
        ("mitsubishi electric", ("Q06UDEHCPU",), "MELSEC Q"),
        ("hitachi energy", ("RTU560",), "RTU500 series"),
        ("ge", ("IC695CPE330",), "PACSystems RX3i"),
        ("moxa", ("MGate MB3280",), "MGate MB3000 series"),
        ("moxa", ("NPort 5150",), "NPort 5100 series"),
        ("moxa", ("EDS-G516E-4GSFP",), "EDS-G500E series"),
        ("delta electronics", ("Delta Industrial Automation DOPSoft",), "DOPSoft"),
        ("delta electronics", ("DX-3021L9",), "DX industrial routers"),
        ("advantech", ("WebAccess/SCADA",), "WebAccess/SCADA"),
        ("advantech", ("EKI-1524-CE",), "EKI-1520-CE series"),
        ("johnson controls", ("MS-NAE5510-2", "NAE55"), "Metasys NAE55"),
        ("johnson controls", ("F4-SNC4150-0",), "Facility Explorer SNC"),
        ("fuji electric", ("Monitouch V-Server",), "V-Server"),
        ("philips", ("M8007A", "IntelliVue MP70"), "IntelliVue MP"),
        ("philips", ("865240", "IntelliVue MX800"), "IntelliVue MX400-MX850"),
        ("becton dickinson bd", ("BD Alaris PC Unit Model 8015",), "Alaris PC unit 8015"),
        ("aveva software", ("Wonderware InTouch",), "InTouch"),
        ("schneider electric", ("InduSoft Web Studio",), "AVEVA Edge"),
        ("osisoft", ("PI Coresight",), "PI Vision"),
    ],
)
def test_families_membership_from_part_numbers(
    vendor: str, names: tuple[str, ...], family: str
) -> None:
    assert family in _family(vendor, names)


def test_families_membership_stays_in_its_line() -> None:
    assert "ControlLogix 5570" not in _family("rockwell automation", ("1756-L85E/B",))
    # Look-alikes of the new lines: another product of the same name stem, or another model.
    assert _family("advantech", ("WebAccess/NMS",)) == set()
    assert _family("philips", ("IntelliVue MX100",)) == set()
    assert _family("fuji electric", ("Alpha5 Smart Loader",)) == set()
    assert _family("becton dickinson bd", ("Alaris 8000 PC unit",)) == set()
    assert _family("moxa", ("OnCell G3110-HSDPA",)) == set()


@pytest.mark.parametrize(
    ("family_name", "vendor", "product", "named"),
    [
        ("DOPSoft", "Delta Electronics", "Delta Industrial Automation DOPSoft", True),
        (
            "CNCSoft ScreenEditor",
            "Delta Electronics",
            "Delta Industrial Automation Screen Editor",
            True,
        ),
        ("CNCSoft ScreenEditor", "Delta Electronics", "Running ScreenEditor", False),
        ("WebAccess/SCADA", "Advantech", "WebAccess/SCADA", True),
        ("WebAccess/SCADA", "Advantech", "WebAccess/NMS", False),
        ("WebAccess/SCADA", "Advantech", "WebAccess HMI Designer", False),
        ("Metasys NAE55", "Johnson Controls Inc.", "Metasys NAE55 engines", True),
        (
            "Metasys NAE55",
            "Johnson Controls",
            "Smoke Control Network Automation Engine (NAE55)",
            False,
        ),
        ("Metasys ADS/ADX/OAS servers", "Johnson Controls", "Metasys ADS/ADX/OAS Servers", True),
        ("Metasys ADS/ADX/OAS servers", "Johnson Controls", "Metasys ADS ADX OAS with MUI", False),
        ("OnCell G3100-HSPA series", "Moxa", "OnCell G3100-HSPA Series", True),
        ("Alpha5", "Fuji Electric", "Alpha5 Smart Loader", False),
        (
            "IntelliVue MP",
            "Philips",
            "IntelliVue Patient Monitors MP Series (includingMP2/X2)",
            True,
        ),
        ("IntelliVue MP", "Philips", "IntelliVue MP monitors MP20-MP90 (M8001A) WLAN", False),
        ("Gemini PET/CT", "Philips", "Gemini PET/CT Family", True),
        (
            "Pyxis MedStation ES",
            "Becton, Dickinson and Company (BD)",
            "BD Pyxis MedStation ES",
            True,
        ),
        (
            "Pyxis MedStation ES",
            "Becton, Dickinson and Company (BD)",
            "BD Pyxis MedStation ES Server",
            False,
        ),
        ("InTouch", "AVEVA Software, LLC", "AVEVA InTouch", True),
        ("InTouch", "AVEVA Software, LLC", "InTouch Access Anywhere", False),
        ("AVEVA Edge", "Schneider Electric Software, LLC", "InTouch Edge HMI", True),
        ("InTouch", "Schneider Electric Software, LLC", "InTouch Edge HMI", False),
        ("PI Vision", "OSIsoft LLC", "PI Coresight", True),
        ("PI Data Archive", "OSIsoft LLC", "PI Data Collection Manager", False),
    ],
)
def test_families_of_the_added_vendors_are_named_as_advisories_write_them(
    family_name: str, vendor: str, product: str, named: bool
) -> None:
    book = family_book()
    (family,) = [f for f in book.families if f.name == family_name]
    assert book.named_by(product, vendor, family)[0] is named


@pytest.mark.parametrize(
    ("product", "named"),
    [
        ("SIMATIC S7-1500 CPU family (incl. related ET200 CPUs and SIPLUS variants)", True),
        ("SIMATIC S7-1500 Software Controller", False),
        ("SIMATIC S7-1500 TM MFP - BIOS", False),
        ("SIMATIC S7-1500 CPU 1518F-4 PN/DP MFP", False),
    ],
)
def test_families_a_product_names_the_family_as_a_whole(product: str, named: bool) -> None:
    book = family_book()
    (family,) = [f for f in book.families if f.name == "SIMATIC S7-1500 CPU"]
    assert book.named_by(product, "Siemens", family)[0] is named


def test_families_a_list_of_families_names_each() -> None:
    book = family_book()
    (q,) = [f for f in book.families if f.name == "MELSEC Q"]
    assert book.named_by("MELSEC iQ-R iQ-F Q L and F series", "Mitsubishi Electric", q)[0]


def test_families_version_line_in_the_name_is_returned() -> None:
    book = family_book()
    (s7,) = [f for f in book.families if f.name == "SIMATIC S7-400 CPU"]
    named, lines = book.named_by("SIMATIC S7-400 PN/DP V6 and below CPU family", "Siemens", s7)
    assert named
    assert lines
    assert lines[0].text == "6"
    assert lines[0].and_below


def test_families_a_bad_entry_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "families.yaml"
    path.write_text(
        "families:\n  - {vendor: X, family: Y, members: ['('], names: [Y], source: s}\n"
    )
    with pytest.raises(ValueError, match="bad member pattern"):
        load_families(path)


def test_families_overlay_replaces_a_family_of_the_same_name_and_keeps_the_others() -> None:
    shipped = family_book()
    corrected = parse_families(
        "families:\n"
        "  - {vendor: Siemens, family: SIMATIC S7-1500 CPU, members: ['^6es799'],"
        " names: [S7-1500], source: a correction}\n",
        source="metro@1",
        known=shipped,
    )
    book = overlay(shipped, corrected)
    assert len(book.families) == len(shipped.families)
    # The shipped prefix no longer makes an S7-1500; the corrected one does.
    assert "SIMATIC S7-1500 CPU" not in {f.name for f in book.of("siemens", ("6ES7 511-1AK02",))}
    assert "SIMATIC S7-1500 CPU" in {f.name for f in book.of("siemens", ("6ES7 991-0AA00",))}
    assert "SIMATIC S7-1200 CPU" in {f.name for f in book.of("siemens", ("6ES7 214-1AG40",))}
    # The shipped book itself is unchanged.
    assert "SIMATIC S7-1500 CPU" in {f.name for f in shipped.of("siemens", ("6ES7 511-1AK02",))}


def test_families_a_document_naming_a_family_twice_is_refused() -> None:
    entry = "  - {vendor: X, family: Y, members: ['^y'], names: [Y], source: s}\n"
    with pytest.raises(ValueError, match=r"metro@2 families\[1\]: 'Y' appears twice"):
        parse_families("families:\n" + entry + entry, source="metro@2")
