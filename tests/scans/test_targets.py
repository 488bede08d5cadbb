"""Target expansion: syntax, streaming, scope validation before the first address, size cap."""

import ipaddress
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cybermission.errors import ScopeError, ValidationError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.scans.targets import count_targets, expand_targets


def _guard(*cidrs: str, excludes: tuple[str, ...] = ()) -> ScopeGuard:
    return ScopeGuard([ScopeRule.build("test", cidrs, excludes)])


LAB = _guard("127.10.0.0/16", "::1/128")


def _fixed(*addresses: str) -> Callable[[str], list[str]]:
    def resolve(name: str) -> list[str]:
        return list(addresses)

    return resolve


def test_expand_targets_single_addresses_ipv4_and_ipv6() -> None:
    assert list(expand_targets(["127.10.0.7", "::1"], guard=LAB)) == ["127.10.0.7", "::1"]


def test_expand_targets_cidr() -> None:
    got = list(expand_targets(["127.10.0.0/30"], guard=LAB))
    assert got == ["127.10.0.0", "127.10.0.1", "127.10.0.2", "127.10.0.3"]


def test_expand_targets_ipv6_cidr() -> None:
    assert list(expand_targets(["::1/128"], guard=LAB)) == ["::1"]


def test_expand_targets_dash_range_full_form() -> None:
    got = list(expand_targets(["127.10.0.10-127.10.0.40"], guard=LAB))
    assert got[0] == "127.10.0.10"
    assert got[-1] == "127.10.0.40"
    assert len(got) == 31


def test_expand_targets_dash_range_short_form() -> None:
    assert list(expand_targets(["127.10.0.10-40"], guard=LAB)) == list(
        expand_targets(["127.10.0.10-127.10.0.40"], guard=LAB)
    )


def test_expand_targets_range_crossing_octets() -> None:
    got = list(expand_targets(["127.10.0.254-127.10.1.1"], guard=LAB))
    assert got == ["127.10.0.254", "127.10.0.255", "127.10.1.0", "127.10.1.1"]


def test_expand_targets_merges_overlapping_specs() -> None:
    got = list(expand_targets(["127.10.0.2", "127.10.0.0/30", "127.10.0.3-5"], guard=LAB))
    assert got == [f"127.10.0.{i}" for i in range(6)]


def test_expand_targets_hostname_uses_resolved_addresses() -> None:
    got = list(expand_targets(["plc-1.lab"], guard=LAB, resolve=_fixed("127.10.3.3")))
    assert got == ["127.10.3.3"]


def test_expand_targets_real_resolution_of_localhost_judged_by_address() -> None:
    # localhost resolves to 127.0.0.1 (and ::1): outside 127.10.0.0/16 for IPv4.
    with pytest.raises(ScopeError, match="localhost"):
        expand_targets(["localhost"], guard=_guard("127.10.0.0/16"))


def test_expand_targets_hostname_with_one_address_outside_is_refused() -> None:
    resolve = _fixed("127.10.3.3", "127.99.0.1")
    with pytest.raises(ScopeError, match=r"plc\.lab.*127\.99\.0\.1"):
        expand_targets(["plc.lab"], guard=LAB, resolve=resolve)


def test_expand_targets_is_lazy_on_a_slash_8() -> None:
    targets = expand_targets(["127.0.0.0/8"], guard=_guard("127.0.0.0/8"), max_hosts=1 << 24)
    assert list(itertools.islice(targets, 3)) == ["127.0.0.0", "127.0.0.1", "127.0.0.2"]


def test_expand_targets_validates_every_spec_before_yielding() -> None:
    # The bad spec is last: nothing may be produced for the good ones first.
    with pytest.raises(ScopeError, match=r"127\.11\.0\.0/24"):
        expand_targets(["127.10.0.0/24", "127.11.0.0/24"], guard=LAB)


def test_expand_targets_cidr_partly_outside_is_refused_naming_it() -> None:
    with pytest.raises(ScopeError, match=r"127\.10\.0\.0/15"):
        expand_targets(["127.10.0.0/15"], guard=LAB)


def test_expand_targets_range_partly_outside_is_refused() -> None:
    with pytest.raises(ScopeError, match=r"127\.10\.255\.250-127\.11\.0\.5"):
        expand_targets(["127.10.255.250-127.11.0.5"], guard=LAB)


def test_expand_targets_skips_excluded_addresses_silently() -> None:
    guard = _guard("127.10.0.0/29", excludes=("127.10.0.2/31",))
    got = list(expand_targets(["127.10.0.0/29"], guard=guard))
    assert got == [
        "127.10.0.0",
        "127.10.0.1",
        "127.10.0.4",
        "127.10.0.5",
        "127.10.0.6",
        "127.10.0.7",
    ]


def test_expand_targets_spec_entirely_excluded_is_refused() -> None:
    guard = _guard("127.10.0.0/24", excludes=("127.10.0.128/25",))
    with pytest.raises(ScopeError, match="excluded"):
        expand_targets(["127.10.0.200-210"], guard=guard)


def test_expand_targets_range_spanning_two_adjacent_scopes_is_allowed() -> None:
    guard = ScopeGuard(
        [ScopeRule.build("a", ["127.10.0.0/24"]), ScopeRule.build("b", ["127.10.1.0/24"])]
    )
    assert count_targets(["127.10.0.250-127.10.1.5"], guard=guard) == 12


def test_expand_targets_expired_scope_refuses_everything() -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    guard = ScopeGuard([ScopeRule.build("old", ["127.10.0.0/16"], valid_until=past)])
    with pytest.raises(ScopeError, match="no authorised scope"):
        expand_targets(["127.10.0.1"], guard=guard)


@pytest.mark.parametrize(
    "spec",
    ["127.10.0.300", "127.10.0.40-10", "127.10.0.1-999", "127.10.0.1-::1", "not a host!", "", "  "],
)
def test_expand_targets_bad_syntax_names_the_spec(spec: str) -> None:
    with pytest.raises(ValidationError, match="target"):
        expand_targets([spec], guard=LAB)


def test_expand_targets_cidr_with_host_bits_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"127\.10\.0\.1/24"):
        expand_targets(["127.10.0.1/24"], guard=LAB)


def test_expand_targets_unresolvable_name_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"nowhere\.invalid"):
        expand_targets(["nowhere.invalid"], guard=LAB, resolve=_fixed())


def test_expand_targets_refuses_more_than_max_hosts() -> None:
    with pytest.raises(ValidationError, match="limit of 256"):
        expand_targets(["127.10.0.0/23"], guard=LAB, max_hosts=256)


def test_expand_targets_default_cap_refuses_a_slash_8() -> None:
    with pytest.raises(ValidationError, match="limit"):
        expand_targets(["127.0.0.0/8"], guard=_guard("127.0.0.0/8"))


def test_expand_targets_ipv4_mapped_address_is_judged_as_ipv4() -> None:
    assert list(expand_targets(["::ffff:127.10.0.9"], guard=LAB)) == ["127.10.0.9"]
    with pytest.raises(ScopeError):
        expand_targets(["::ffff:10.0.0.1"], guard=LAB)


def test_expand_targets_ipv4_mapped_network_is_refused() -> None:
    with pytest.raises(ValidationError, match="IPv4-mapped"):
        expand_targets(["::ffff:0:0/96"], guard=_guard("::/32"))


def test_expand_targets_a_bare_string_is_refused() -> None:
    with pytest.raises(ValidationError, match="one string"):
        expand_targets("127.10.0.1", guard=LAB)


def test_count_targets_counts_what_expansion_yields() -> None:
    guard = _guard("127.10.0.0/16", excludes=("127.10.0.16/28",))
    specs = ["127.10.0.0/24", "127.10.0.100-127.10.1.9"]
    assert count_targets(specs, guard=guard) == len(list(expand_targets(specs, guard=guard)))
    assert count_targets(specs, guard=guard) == 256 + 10 - 16


def test_expand_targets_ipv6_range() -> None:
    guard = _guard("::/32")
    assert list(expand_targets(["::1-::3"], guard=guard)) == ["::1", "::2", "::3"]


@given(
    first=st.integers(min_value=0, max_value=1023),
    size=st.integers(min_value=1, max_value=300),
    hole_first=st.integers(min_value=0, max_value=1023),
    hole_prefix=st.integers(min_value=26, max_value=32),
)
def test_expand_targets_count_matches_and_every_address_passes_the_guard(
    first: int, size: int, hole_first: int, hole_prefix: int
) -> None:
    base = int(ipaddress.IPv4Address("127.10.0.0"))
    hole = ipaddress.IPv4Network((base + hole_first, hole_prefix), strict=False)
    guard = _guard("127.10.0.0/16", excludes=(str(hole),))
    start = ipaddress.IPv4Address(base + first)
    spec = f"{start}-{start + size - 1}"
    try:
        addresses = list(expand_targets([spec], guard=guard))
    except ScopeError:  # the whole range lies inside the exclusion
        assert all(ipaddress.IPv4Address(base + first + i) in hole for i in range(size))
        return
    assert len(addresses) == count_targets([spec], guard=guard)
    assert len(set(addresses)) == len(addresses)
    assert all(guard.allows(a) for a in addresses)
    expected = [str(start + i) for i in range(size) if start + i not in hole]
    assert addresses == expected
