"""Vendor aliases, part-number compaction and version ranges as CSAF and devices write them."""

import pytest

from cybermission.findings.advisories.normalise import (
    VersionOutcome,
    compact,
    expand_product_name,
    families,
    parse_version,
    parse_version_spec,
    vendor_key,
)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Schneider Electric", "schneider electric"),
        ("Schneider Electric Software, LLC", "schneider electric"),
        ("Telemecanique", "schneider electric"),
        ("Siemens AG", "siemens"),
        ("Rockwell Automation/Allen-Bradley", "rockwell automation"),
        ("Allen-Bradley", "rockwell automation"),
        ("Mitsubishi Electric Corporation", "mitsubishi electric"),
        ("ABB", "abb"),
        ("Unknown Maker GmbH", "unknown maker"),
    ],
)
def test_normalise_vendor_key_folds_aliases(name: str, key: str) -> None:
    assert vendor_key(name) == key


def test_normalise_compact_drops_spaces_and_dashes() -> None:
    assert compact("BMX P34 2020") == compact("BMXP34-2020") == "bmxp342020"


def test_normalise_family_from_part_number() -> None:
    assert families(("6ES7 315-2EH14-0AB0",)) == ("SIMATIC S7-300",)


@pytest.mark.parametrize(
    ("spec", "firmware", "outcome"),
    [
        ("< SV3.51", "v2.70", VersionOutcome.IN_RANGE),
        ("< SV3.51", "V3.51", VersionOutcome.OUT),
        ("vers:generic/<3.51", "3.5", VersionOutcome.IN_RANGE),
        ("vers:all/<V4.3.8", "V4.3.8", VersionOutcome.OUT),
        ("vers:all/>=V7.80<V9.40", "V8.0", VersionOutcome.IN_RANGE),
        ("vers:all/>=V7.80<V9.40", "V9.40", VersionOutcome.OUT),
        (">= 1.0 | <= 1.32", "1.32", VersionOutcome.IN_RANGE),
        ("< V3.X.14", "V3.2.8", VersionOutcome.IN_RANGE),
        ("< V3.X.14", "V3.2.14", VersionOutcome.OUT),
        ("<= 33", "33.11", VersionOutcome.IN_RANGE),
        ("20-33", "19.5", VersionOutcome.OUT),
        ("3.51 and prior", "3.5", VersionOutcome.IN_RANGE),
        ("V3.x", "V3.2.8", VersionOutcome.IN_RANGE),
        ("V3.x", "V4.0", VersionOutcome.OUT),
        ("vers:all/*", None, VersionOutcome.ALL),
        ("All versions", "1.0", VersionOutcome.ALL),
        ("<= 2.0", None, VersionOutcome.UNKNOWN),
        ("<=the_first_5_digits_of_serial_number_22081", "1.0", VersionOutcome.UNKNOWN),
        ("All versions with Function State (FS) < 11", "4.4", VersionOutcome.UNKNOWN),
    ],
)
def test_normalise_version_ranges(spec: str, firmware: str | None, outcome: VersionOutcome) -> None:
    assert parse_version_spec(spec).check(parse_version(firmware)) is outcome


@pytest.mark.parametrize(
    ("name", "expanded"),
    [
        (
            "R04/08/16/32/120(EN)CPU",
            {"R04CPU", "R08CPU", "R16CPU", "R32CPU", "R120CPU"}
            | {"R04ENCPU", "R08ENCPU", "R16ENCPU", "R32ENCPU", "R120ENCPU"},
        ),
        ("MELSEC iQ-R series CPU module products R00/01/02 CPU", {"R00CPU", "R01CPU", "R02CPU"}),
        ("L02CPU(-P)", {"L02CPU", "L02CPU-P"}),
        ("L26CPU-(P)BT", {"L26CPU-BT", "L26CPU-PBT"}),
        ("RJ71C24(-R2/R4)", {"RJ71C24", "RJ71C24-R2", "RJ71C24-R4"}),
        ("Desigo PXC12/22/36-E.D", {"PXC12-E.D", "PXC22-E.D", "PXC36-E.D"}),
    ],
)
def test_normalise_expands_sibling_lists_and_glued_options(name: str, expanded: set[str]) -> None:
    assert set(expand_product_name(name)) == expanded


@pytest.mark.parametrize(
    "name",
    [
        "MiniMed Paradigm 522/722 pumps",  # no letter prefix: not a model list
        "System 1 6.x Part No. 3060/00",
        "SIMATIC S7-1200 CPU 1215C DC/DC/Rly (6ES7215-1HG40-0XB0)",  # a part number, not options
        "SCALANCE XB205-3 (ST, E/IP)",
    ],
)
def test_normalise_leaves_other_slashes_and_parentheses_alone(name: str) -> None:
    assert expand_product_name(name) == ()


def test_normalise_families_of_mitsubishi_models() -> None:
    assert families(("R04CPU",)) == ("iQ-R",)
    assert families(("R120ENCPU",)) == ("iQ-R",)
    assert families(("FX5U-32MT/ES",)) == ("iQ-F",)
    assert families(("RJ71C24",)) == ()  # a network module, not an iQ-R CPU
