"""Product notations: placeholders, inner spaces, sibling lists, part numbers in the version."""

import pytest

from cybermission.findings.advisories.products import (
    WILD,
    align,
    models_in_version,
    notation,
    siblings,
)


@pytest.mark.parametrize(
    ("name", "units"),
    [
        ("140CPU65xxxxx", f"140cpu65{WILD}"),
        ("ILC 1x1", f"ilc1{WILD}1"),
        ("ControlLogix 5580 (1756 - L8z)", f"controllogix55801756l8{WILD}"),
        ("CS1H-CPU □ □ H", f"cs1hcpu{WILD}h"),
        ("FX5U-xMy/z", f"fx5u{WILD}m{WILD}"),
        ("SIMATIC ET200ecoPN, 8DI, DC24V, 8xM12", "simaticet200ecopn8didc24v8xm12"),
        ("FL SWITCH 3xxx", f"flswitch3{WILD}"),
    ],
)
def test_products_placeholders(name: str, units: str) -> None:
    assert notation(name).units == units


@pytest.mark.parametrize(
    ("device", "product", "matches"),
    [
        ("140 CPU 651 50", "Quantum processors with integrated Ethernet COPRO 140CPU65xxxxx", True),
        ("Q06 UDEHCPU", "MELSEC Q Q06UDEHCPU", True),
        ("SCALANCE X204IRT", "SCALANCE X204 IRT", True),
        ("FX5U-64MR/DS", "FX5U-xMy/z x=32,64,80", True),
        ("SEL-751", "SEL-751A Feeder Protection Relay", False),
    ],
)
def test_products_align_on_word_boundaries(device: str, product: str, matches: bool) -> None:
    d, p = notation(device), notation(product)
    ends = [
        (end, stop)
        for start in p.bounds
        for end, stop in align(d, p, start)
        if end == len(d.units) and (stop in p.bounds or p.units[stop - 1] == WILD)
    ]
    assert bool(ends) is matches


def test_products_sibling_lists() -> None:
    assert "CS1G-CPU**H" in siblings("CS1H/G-CPU**H")
    assert "Relion 650" in siblings("Relion 670/650")
    assert siblings("CPU 416-3 PN/DP") == ()


def test_products_part_numbers_in_the_version_branch() -> None:
    assert models_in_version("GATE-E1 (EOL 2013)") == ("GATE-E1",)
    assert models_in_version("CP401 | CP451") == ("CP401", "CP451")
    assert models_in_version("< V2.9.7") == ()
    assert models_in_version("R130.2 | R140") == ()
