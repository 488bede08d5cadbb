"""Vendor versions in one total order, and the ranges advisories write (versions.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cybermission.findings.advisories.versions import (
    VersionOutcome,
    compare_versions,
    parse_version,
    parse_version_spec,
)


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("V2.2 SP1", "V2.2 SP2"),
        ("1.0-rc1", "1.0"),
        ("1.0 beta 2", "1.0"),
        ("4.3.8", "4.3.8a"),
        ("4.3.8a", "4.3.8b"),
        ("4.3.8b", "4.3.9"),
        ("V16 Update 3", "V16 Update 3a"),
        ("V16 Update 3a", "V16 Update 4"),
        ("V4.7 SP9 HF1", "V4.7 SP10 HF5"),
        ("6.9.2", "6.9.2 CU01"),
        ("R511.5", "R511.5_TCU4_HF4"),
        ("15.2(6)E0a", "15.2(6)E2a"),
        ("R302-V2", "R302-V3"),
        ("2.9", "2.10"),
        ("02.07.07(10)", "02.07.08"),
    ],
)
def test_versions_suffixes_order(lower: str, higher: str) -> None:
    low, high = parse_version(lower), parse_version(higher)
    assert low is not None
    assert high is not None
    assert compare_versions(low, high) == -1
    assert compare_versions(high, low) == 1


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
        ("<=the_first_5_digits_of_serial_number_22081", "22081", VersionOutcome.IN_RANGE),
        ("<=with_the_first_5_digits_of_serial_number_24051", "24052", VersionOutcome.OUT),
        ("All versions with Function State (FS) < 11", "4.4", VersionOutcome.UNKNOWN),
        ("All versions < V16 Update 3a", "V16 Update 3", VersionOutcome.IN_RANGE),
        ("All versions < V4.7 SP10 HF5", "V4.7 SP9 HF1", VersionOutcome.IN_RANGE),
        ("> 6.8.6 | < 6.9.2 CU01", "6.9.2", VersionOutcome.IN_RANGE),
        ("<R511.5_TCU4_HF4", "R511.5", VersionOutcome.IN_RANGE),
        (">=R16x|<=R162.10", "R162.10", VersionOutcome.IN_RANGE),
        (">=R16x|<=R162.10", "R162.11", VersionOutcome.OUT),
        (">=R101-V0|<R302-V3", "R302-V2", VersionOutcome.IN_RANGE),
        ("<v36.011_v35.013_v34.014", "34.011", VersionOutcome.IN_RANGE),
        ("<v36.011_v35.013_v34.014", "33.011", VersionOutcome.IN_RANGE),
        ("<v36.011_v35.013_v34.014", "35.013", VersionOutcome.OUT),
        ("9.0.1 | 9.0.2 | 9.0.3", "11.0.5", VersionOutcome.OUT),
        ("R130.2 | R140 | R150 | R151", "R151", VersionOutcome.IN_RANGE),
        ("12.7.1-12.7.3", "12.7.3.0", VersionOutcome.IN_RANGE),
        (
            "All versions between V2.5 (including) and V2.7 (excluding)",
            "V2.9.4",
            VersionOutcome.OUT,
        ),
        ("<= 15.2(6)E0a", "15.2(6)E2a", VersionOutcome.OUT),
        ("< FW14", "FW13", VersionOutcome.IN_RANGE),
    ],
)
def test_versions_ranges(spec: str, firmware: str | None, outcome: VersionOutcome) -> None:
    assert parse_version_spec(spec).check(parse_version(firmware), firmware) is outcome


_QUALIFIER = st.sampled_from(["", " SP{}", " Update {}", " HF{}", "-rc{}", " CU0{}", "{}"])


@st.composite
def _versions(draw: st.DrawFn) -> str:
    release = ".".join(str(draw(st.integers(0, 30))) for _ in range(draw(st.integers(1, 4))))
    qualifier = draw(_QUALIFIER)
    if qualifier == "{}":
        return release + draw(st.sampled_from(["a", "b", "c"]))
    return release + qualifier.format(draw(st.integers(1, 12)))


@given(_versions(), _versions(), _versions())
def test_versions_order_is_total_and_transitive(a: str, b: str, c: str) -> None:
    x, y, z = parse_version(a), parse_version(b), parse_version(c)
    assert x is not None
    assert y is not None
    assert z is not None
    assert compare_versions(x, y) == -compare_versions(y, x)
    assert compare_versions(x, x) == 0
    if compare_versions(x, y) <= 0 and compare_versions(y, z) <= 0:
        assert compare_versions(x, z) <= 0


@given(_versions())
def test_versions_a_release_is_inside_its_own_inclusive_bound(text: str) -> None:
    assert parse_version_spec(f"<= {text}").check(parse_version(text), text) in (
        VersionOutcome.IN_RANGE,
    )
