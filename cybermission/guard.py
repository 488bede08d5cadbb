"""The scope guard: the one choke point every outgoing connection and datagram passes.

A target is allowed when it lies in at least one *active* scope (inside its validity dates) and in
none of that scope's exclusions. The guard only judges IP literals: hostnames are resolved first
(:func:`cybermission.scans.targets.expand_targets`) and every resolved address is judged, so a name
that resolves outside the scope is refused. The check runs again at send time, right before the
socket connects, so a scope revoked mid-run stops the run.
"""

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cybermission.errors import ScopeError, ValidationError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Networks no scope may cover however it is written: the guard refuses scopes that authorise the
# whole Internet by accident (0.0.0.0/0, 127.0.0.1/0 ... normalise to it).
_MIN_PREFIX = {4: 8, 6: 32}


# IPv6 ranges whose addresses stand for IPv4 hosts: a scope over one of them covers IPv4 networks
# it does not name (a NAT64 gateway forwards 64:ff9b::a14:1 to 10.20.0.1). A scope may neither
# overlap a NAT64 prefix nor be written inside the IPv4-mapped or -translated ranges, and the
# guard judges a mapped address as the IPv4 address it carries and refuses the others at send
# time, so a wider IPv6 scope that happens to contain them (::/32) authorises no IPv4 host.
_NAT64 = (
    (ipaddress.IPv6Network("64:ff9b::/96"), "the NAT64 well-known prefix, RFC 6052"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "the NAT64 local-use prefix, RFC 8215"),
)
_TRANSLATED = (ipaddress.IPv6Network("::ffff:0:0:0/96"), "IPv4-translated addresses, RFC 2765")
_MAPPED = (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped addresses, RFC 4291 §2.5.5.2")
_IPV4_TRANSLATED = (*_NAT64, _TRANSLATED)


def parse_network(text: str, *, field: str = "cidr") -> IPNetwork:
    """Parse a CIDR strictly enough to catch mistakes that widen a scope.

    ``127.0.0.1/0`` is refused (host bits set: it would silently mean the whole Internet), and so is
    any prefix shorter than /8 (IPv4) or /32 (IPv6), and IPv6 networks written in addresses that
    stand for IPv4 hosts (NAT64, IPv4-translated, IPv4-mapped).
    """
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValidationError(f"{field}: {text!r} is not a network in CIDR form ({exc})") from exc
    if network.prefixlen < _MIN_PREFIX[network.version]:
        raise ValidationError(
            f"{field}: {text!r} is wider than /{_MIN_PREFIX[network.version]}; "
            "authorise the networks you mean, one by one"
        )
    if isinstance(network, ipaddress.IPv6Network):
        for alias, what in _NAT64:
            if network.overlaps(alias):
                raise ValidationError(
                    f"{field}: {text!r} overlaps {alias} ({what}): its addresses stand for IPv4 "
                    "hosts; authorise the IPv4 networks themselves"
                )
        for alias, what in (_MAPPED, _TRANSLATED):
            if network.subnet_of(alias):
                raise ValidationError(
                    f"{field}: {text!r} lies in {alias} ({what}): its addresses stand for IPv4 "
                    "hosts; authorise the IPv4 networks themselves"
                )
    return network


def translated_ipv4(ip: IPAddress) -> str | None:
    """What an IPv6 address that stands for an IPv4 host is (NAT64, translated), else None."""
    if isinstance(ip, ipaddress.IPv6Address):
        for alias, what in _IPV4_TRANSLATED:
            if ip in alias:
                return what
    return None


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """The part of a stored scope the guard needs."""

    name: str
    networks: tuple[IPNetwork, ...]
    exclusions: tuple[IPNetwork, ...] = ()
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    # Where the networks are (the stored scope's site and zone), for placing devices found in it.
    site_id: str | None = None
    zone_id: str | None = None
    # Whose authorisation it is: a device found under this rule belongs to that organisation.
    organization_id: str | None = None

    @classmethod
    def build(
        cls,
        name: str,
        cidrs: Iterable[str],
        excludes: Iterable[str] = (),
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        *,
        site_id: str | None = None,
        zone_id: str | None = None,
        organization_id: str | None = None,
    ) -> "ScopeRule":
        return cls(
            name=name,
            networks=tuple(parse_network(c) for c in cidrs),
            exclusions=tuple(parse_network(c, field="exclude") for c in excludes),
            valid_from=valid_from,
            valid_until=valid_until,
            site_id=site_id,
            zone_id=zone_id,
            organization_id=organization_id,
        )

    def active_at(self, now: datetime) -> bool:
        if self.valid_from is not None and now < _aware(self.valid_from):
            return False
        return not (self.valid_until is not None and now >= _aware(self.valid_until))

    def covers(self, address: IPAddress) -> bool:
        return any(address in n for n in self.networks if n.version == address.version) and not any(
            address in x for x in self.exclusions if x.version == address.version
        )


# Sized for the hosts a run has in flight (the lab profile's 4,096), not for the range: a cache
# as large as a /16 made a /16 run's memory 1.39 x a /20's.
_RECENT_ADDRESSES = 4096


@functools.lru_cache(maxsize=_RECENT_ADDRESSES)
def _parse_address(address: str) -> IPAddress:
    """Parse once per address: a sweep judges every address once per port, at send time."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 on the wire
    return ip


_DAWN = datetime.min.replace(tzinfo=UTC)
_DUSK = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _Allowed:
    """An allowed verdict: ``ip`` may be contacted at any moment in [since, until)."""

    ip: IPAddress
    since: datetime
    until: datetime


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class ScopeGuard:
    """Judges each address against the authorised scopes; raises :class:`ScopeError` if refused."""

    def __init__(self, rules: Sequence[ScopeRule]) -> None:
        self._rules = tuple(rules)
        # Which rules' networks cover an address does not change with time: judged once per
        # address (a run checks each address once per connect or datagram session), while
        # validity, which does change, is judged at every check.
        self._covering = functools.lru_cache(maxsize=_RECENT_ADDRESSES)(self._rules_covering)
        # The allowed verdicts of recent addresses, each with the moments it holds between: the
        # latest start and the earliest end of the validity of the rules covering the address
        # (issue 12: a run checks each address once per connect, session and datagram, and the
        # full judgement was 3-8% of a 1,024-device scan). Every check still reads the clock and
        # compares it with the verdict's bounds, so a scope that expires mid-run refuses at the
        # next send exactly as before; refusals are never cached.
        self._allowed: dict[str, _Allowed] = {}

    @property
    def rules(self) -> tuple[ScopeRule, ...]:
        return self._rules

    def check(self, address: str, *, now: datetime | None = None) -> IPAddress:
        """Return the parsed address when it may be contacted now, else raise ``ScopeError``."""
        moment = now or datetime.now(UTC)
        allowed = self._allowed.get(address)
        if allowed is not None and allowed.since <= moment < allowed.until:
            return allowed.ip
        ip = self._judge(address, moment)
        if len(self._allowed) >= _RECENT_ADDRESSES:
            self._allowed.pop(next(iter(self._allowed)), None)  # the oldest verdict
        self._allowed[address] = self._allowed_between(ip, moment)
        return ip

    def _judge(self, address: str, moment: datetime) -> IPAddress:
        try:
            ip = _parse_address(address)
        except ValueError as exc:
            raise ScopeError(address, "not an IP address; resolve names before the guard") from exc
        translated = translated_ipv4(ip)
        if translated is not None:
            raise ScopeError(address, f"an address of {translated} stands for an IPv4 host")
        covering = [r for r in self._covering(ip) if r.active_at(moment)]
        if covering:
            # A global run over space two organisations reuse: whose devices it finds is not
            # for the guard to guess (each organisation's own run is judged by its scopes only).
            if len({r.organization_id for r in covering} - {None}) > 1:
                raise ScopeError(
                    address,
                    "authorised by scopes of several organisations; scan it with one "
                    "organisation's token so what it finds goes to that organisation",
                )
            return ip
        active = [r for r in self._rules if r.active_at(moment)]
        if not active:
            raise ScopeError(address, "no authorised scope is valid now")
        excluded = [r.name for r in active if any(ip in x for x in r.exclusions)]
        if excluded:
            raise ScopeError(address, f"excluded by scope {', '.join(sorted(excluded))}")
        return self._refuse(address)

    def rule_for(self, address: str, *, now: datetime | None = None) -> ScopeRule | None:
        """The most specific active scope covering ``address`` (to place a device), if any."""
        try:
            ip = self.check(address, now=now)
        except ScopeError:
            return None
        moment = now or datetime.now(UTC)
        covering = [r for r in self._covering(ip) if r.active_at(moment)]
        return max(
            covering,
            key=lambda r: max(n.prefixlen for n in r.networks if ip in n),
            default=None,
        )

    def allows(self, address: str, *, now: datetime | None = None) -> bool:
        try:
            self.check(address, now=now)
        except ScopeError:
            return False
        return True

    def _allowed_between(self, ip: IPAddress, moment: datetime) -> "_Allowed":
        """The allowed verdict on ``ip`` at ``moment`` and the span it holds for: while no
        covering rule's validity starts or ends (a rule starting later could add a second
        organisation; one ending removes the authorisation)."""
        since, until = _DAWN, _DUSK
        for rule in self._covering(ip):
            start = None if rule.valid_from is None else _aware(rule.valid_from)
            end = None if rule.valid_until is None else _aware(rule.valid_until)
            for bound in (start, end):
                if bound is None:
                    continue
                if bound <= moment:
                    since = max(since, bound)
                else:
                    until = min(until, bound)
        return _Allowed(ip, since, until)

    def _rules_covering(self, ip: IPAddress) -> tuple[ScopeRule, ...]:
        return tuple(r for r in self._rules if r.covers(ip))

    @staticmethod
    def _refuse(address: str) -> IPAddress:
        raise ScopeError(address, "outside every authorised scope")
