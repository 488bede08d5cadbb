"""Turn target specs (addresses, CIDRs, dash ranges, hostnames) into a stream of in-scope addresses.

Every spec is parsed, sized and judged against the scope guard *before* the first address is
produced, so a bad or out-of-scope spec fails the whole request and nothing is sent. Expansion
itself is lazy: a /8 is walked, never materialised.

Scope policy for a network or range: every address of it must lie inside the networks of the active
scopes (a spec that reaches outside is refused whole, naming the spec). Addresses that a scope's
exclusions carve out are skipped silently while expanding; a spec whose every address is excluded
is refused. A hostname is resolved and every address it resolves to must pass the guard.
"""

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cybermission.errors import ScopeError, ValidationError
from cybermission.guard import IPAddress, ScopeGuard, ScopeRule, parse_network

DEFAULT_MAX_HOSTS = 1 << 20

Resolver = Callable[[str], list[str]]

# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True, slots=True)
class _Span:
    """An inclusive run of addresses of one IP version, as integers."""

    version: int
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class _Spec:
    text: str
    spans: tuple[_Span, ...]
    resolved: bool  # a hostname: judged address by address with the guard itself


def resolve_host(name: str) -> list[str]:
    """Every distinct address a name resolves to (A and AAAA), in resolver order."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValidationError(f"target: {name!r} does not resolve ({exc})") from exc
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def expand_targets(
    specs: Sequence[str],
    *,
    guard: ScopeGuard,
    resolve: Resolver | None = None,
    max_hosts: int = DEFAULT_MAX_HOSTS,
    now: datetime | None = None,
) -> Iterator[str]:
    """Validate every spec now, then return a lazy iterator over the in-scope addresses.

    Raises ``ValidationError`` (bad syntax, unresolvable name, more than ``max_hosts`` addresses)
    or ``ScopeError`` (a spec reaching outside the authorised scopes) before anything is produced.
    Overlapping specs are merged, so each address comes out once: IPv4 first, then IPv6, each in
    ascending order.
    """
    allowed = _plan(specs, guard=guard, resolve=resolve, max_hosts=max_hosts, now=now)
    return _walk(allowed)


def count_targets(
    specs: Sequence[str],
    *,
    guard: ScopeGuard,
    resolve: Resolver | None = None,
    max_hosts: int = DEFAULT_MAX_HOSTS,
    now: datetime | None = None,
) -> int:
    """How many addresses :func:`expand_targets` will produce for the same arguments."""
    allowed = _plan(specs, guard=guard, resolve=resolve, max_hosts=max_hosts, now=now)
    return sum(span.size for span in allowed)


def _plan(
    specs: Sequence[str],
    *,
    guard: ScopeGuard,
    resolve: Resolver | None,
    max_hosts: int,
    now: datetime | None,
) -> list[_Span]:
    if isinstance(specs, str):
        raise ValidationError("targets: expected a list of specs, got one string")
    if not specs:
        raise ValidationError("targets: at least one target is required")
    parsed = [_parse(text, resolve or resolve_host) for text in specs]
    total = sum(span.size for span in _merge(s for spec in parsed for s in spec.spans))
    if total > max_hosts:
        raise ValidationError(
            f"targets: {total} addresses is more than the limit of {max_hosts}; split the scan"
        )
    moment = now or datetime.now(UTC)
    active = [rule for rule in guard.rules if rule.active_at(moment)]
    if not active:
        raise ScopeError(", ".join(specs), "no authorised scope is valid now")
    covered = _merge(_span_of(n) for rule in active for n in rule.networks)
    permitted = _merge(
        piece
        for rule in active
        for network in rule.networks
        for piece in _subtract(_span_of(network), [_span_of(x) for x in rule.exclusions])
    )
    contested = _contested(active)
    kept: list[_Span] = []
    for spec in parsed:
        if any(_intersect(span, contested) for span in spec.spans):
            raise ScopeError(
                spec.text,
                "authorised by scopes of several organisations; scan it with one "
                "organisation's token so what it finds goes to that organisation",
            )
        if spec.resolved:
            for span in spec.spans:
                address = str(ipaddress.ip_address(span.first))
                try:
                    guard.check(address, now=moment)
                except ScopeError as exc:
                    raise ScopeError(spec.text, f"resolves to {address}: {exc.reason}") from exc
            kept.extend(spec.spans)
            continue
        for span in spec.spans:
            if not _covers(covered, span):
                raise ScopeError(spec.text, "reaches outside every authorised scope")
        inside = [piece for span in spec.spans for piece in _intersect(span, permitted)]
        if not inside:
            raise ScopeError(spec.text, "every address is excluded by the authorised scopes")
        kept.extend(inside)
    return _merge(kept)


def _contested(rules: Sequence[ScopeRule]) -> list[_Span]:
    """Addresses the scopes of two or more organisations cover (reused private space): a run
    holding both (a global one) could not tell whose devices it finds there."""
    by_owner: dict[str, list[_Span]] = {}
    for rule in rules:
        if rule.organization_id is not None:
            by_owner.setdefault(rule.organization_id, []).extend(_span_of(n) for n in rule.networks)
    owners = [_merge(spans) for spans in by_owner.values()]
    return _merge(
        piece
        for index, mine in enumerate(owners)
        for theirs in owners[index + 1 :]
        for span in mine
        for piece in _intersect(span, theirs)
    )


def _parse(text: str, resolve: Resolver) -> _Spec:
    spec = text.strip()
    if not spec:
        raise ValidationError("target: empty target")
    if "/" in spec:
        network = parse_network(spec, field="target")
        span = _span_of(network)
        _refuse_mapped(spec, span)
        return _Spec(spec, (span,), resolved=False)
    if "-" in spec and _looks_like_range(spec):
        return _Spec(spec, (_parse_range(spec),), resolved=False)
    address = _parse_address(spec)
    if address is not None:
        return _Spec(spec, (_single(address),), resolved=False)
    if not _HOSTNAME.match(spec) or spec.rstrip(".").rsplit(".", 1)[-1].isdigit():
        # An all-numeric last label is a mistyped address (127.0.0.300), never a name to look up.
        raise ValidationError(f"target: {spec!r} is not an address, CIDR, dash range or host name")
    addresses = [_parse_address(a) for a in resolve(spec)]
    if not addresses or any(a is None for a in addresses):
        raise ValidationError(f"target: {spec!r} resolved to no usable address")
    spans = tuple(_single(a) for a in addresses if a is not None)
    return _Spec(spec, spans, resolved=True)


def _looks_like_range(spec: str) -> bool:
    # Host names may contain '-' too; a range starts with an IP literal.
    return _parse_address(spec.split("-", 1)[0]) is not None


def _parse_range(spec: str) -> _Span:
    head, tail = (part.strip() for part in spec.split("-", 1))
    start = _parse_address(head)
    if start is None:
        raise ValidationError(f"target: {spec!r} does not start with an IP address")
    end = _parse_address(tail)
    if end is None and start.version == 4 and tail.isdigit() and int(tail) <= 255:
        # Short form "127.0.0.10-40": the last octet only, as nmap writes it.
        end = ipaddress.IPv4Address((int(start) & ~0xFF) | int(tail))
    if end is None:
        raise ValidationError(
            f"target: {spec!r}: {tail!r} is neither an address nor a last octet (0-255)"
        )
    if end.version != start.version:
        raise ValidationError(f"target: {spec!r} mixes IPv4 and IPv6")
    if int(end) < int(start):
        raise ValidationError(f"target: {spec!r} ends before it starts")
    span = _Span(start.version, int(start), int(end))
    _refuse_mapped(spec, span)
    return span


def _parse_address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:10.0.0.1 is 10.0.0.1 on the wire: judge and scan it as IPv4.
        return address.ipv4_mapped
    return address


def _refuse_mapped(spec: str, span: _Span) -> None:
    mapped = _span_of(_IPV4_MAPPED)
    if span.version == 6 and span.first <= mapped.last and mapped.first <= span.last:
        raise ValidationError(
            f"target: {spec!r} covers IPv4-mapped IPv6 addresses; write the IPv4 targets instead"
        )


def _single(address: IPAddress) -> _Span:
    return _Span(address.version, int(address), int(address))


def _span_of(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> _Span:
    return _Span(network.version, int(network.network_address), int(network.broadcast_address))


def _merge(spans: Iterable[_Span]) -> list[_Span]:
    merged: list[_Span] = []
    for span in sorted(spans, key=lambda s: (s.version, s.first)):
        last = merged[-1] if merged else None
        if last is not None and last.version == span.version and span.first <= last.last + 1:
            merged[-1] = _Span(span.version, last.first, max(last.last, span.last))
        else:
            merged.append(span)
    return merged


def _covers(merged: list[_Span], span: _Span) -> bool:
    return any(
        m.version == span.version and m.first <= span.first and span.last <= m.last for m in merged
    )


def _intersect(span: _Span, merged: list[_Span]) -> list[_Span]:
    return [
        _Span(span.version, max(span.first, m.first), min(span.last, m.last))
        for m in merged
        if m.version == span.version and m.first <= span.last and span.first <= m.last
    ]


def _subtract(span: _Span, holes: list[_Span]) -> list[_Span]:
    pieces = [span]
    for hole in holes:
        if hole.version != span.version:
            continue
        next_pieces: list[_Span] = []
        for piece in pieces:
            if hole.last < piece.first or piece.last < hole.first:
                next_pieces.append(piece)
                continue
            if piece.first < hole.first:
                next_pieces.append(_Span(piece.version, piece.first, hole.first - 1))
            if hole.last < piece.last:
                next_pieces.append(_Span(piece.version, hole.last + 1, piece.last))
        pieces = next_pieces
    return pieces


def _walk(spans: list[_Span]) -> Iterator[str]:
    for span in spans:
        make = ipaddress.IPv4Address if span.version == 4 else ipaddress.IPv6Address
        for value in range(span.first, span.last + 1):
            yield str(make(value))


def target_membership(specs: Sequence[str]) -> Callable[[str], bool]:
    """Whether an address lies inside ``specs`` (what a finished run looked at), for absence.

    Host names are not resolved again: the addresses they had are not known now, so nothing is
    counted absent because of them. Specs that no longer parse cover nothing.
    """

    def no_resolution(_name: str) -> list[str]:
        return []

    spans: list[_Span] = []
    for text in specs:
        try:
            spans.extend(_parse(text, no_resolution).spans)
        except ValidationError:
            continue
    merged = _merge(spans)

    def contains(address: str) -> bool:
        parsed = _parse_address(address)
        return parsed is not None and _covers(merged, _single(parsed))

    return contains
