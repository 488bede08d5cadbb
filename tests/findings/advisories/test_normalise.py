"""Vendor aliases, part-number compaction and sibling lists as CSAF and devices write them."""

import pytest

from cybermission.findings.advisories.normalise import compact, expand_product_name, vendor_key


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
        ("Schweitzer Engineering Laboratories", "sel"),
        ("Unknown Maker GmbH", "unknown maker"),
    ],
)
def test_normalise_vendor_key_folds_aliases(name: str, key: str) -> None:
    assert vendor_key(name) == key


def test_normalise_compact_drops_spaces_and_dashes() -> None:
    assert compact("BMX P34 2020") == compact("BMXP34-2020") == "bmxp342020"


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
