"""Vendor aliases, part-number compaction and version ranges as CSAF and devices write them."""

import pytest

from cybermission.findings.advisories.normalise import (
    VersionOutcome,
    compact,
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
