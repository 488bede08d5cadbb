"""Family knowledge (families.yaml): it loads, each entry is well formed, and it decides right."""

from pathlib import Path

import pytest

from cybermission.findings.advisories.families import family_book, load_families


def _family(vendor: str, names: tuple[str, ...]) -> set[str]:
    return {f.name for f in family_book().of(vendor, names)}


def test_families_every_entry_has_a_source_and_names() -> None:
    book = family_book()
    assert len(book.families) >= 40
    assert len({f.vendor for f in book.families}) >= 12
    for family in book.families:
        assert family.names, family.name
        assert family.source.strip(), family.name


@pytest.mark.parametrize(
    ("vendor", "names", "family"),
    [
        ("siemens", ("6ES7 511-1AK02-0AB0",), "SIMATIC S7-1500 CPU"),
        ("rockwell automation", ("1756-L85E/B",), "ControlLogix 5580"),
        ("mitsubishi electric", ("Q06UDEHCPU",), "MELSEC Q"),
        ("hitachi energy", ("RTU560",), "RTU500 series"),
        ("ge", ("IC695CPE330",), "PACSystems RX3i"),
    ],
)
def test_families_membership_from_part_numbers(
    vendor: str, names: tuple[str, ...], family: str
) -> None:
    assert family in _family(vendor, names)


def test_families_membership_stays_in_its_line() -> None:
    assert "ControlLogix 5570" not in _family("rockwell automation", ("1756-L85E/B",))


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
