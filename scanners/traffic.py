"""The per-packet passive decoder: services and conversations from parsed packets, bounded state.

One code path for recorded and live traffic: ``scanners/pcap.py`` feeds it a file's frames,
``scanners/listen.py`` a mirror interface's. What the device *sent* is given to the probes' own
``decode_answer`` (the decoders the active probes use):

- a UDP datagram from a port a probe knows, as one payload;
- each TCP segment from such a port, as one payload (decoders written for one answer per segment);
- and the reassembled bytes of each server-to-client TCP direction ``(src, sport, dst, dport)``,
  so answers split across segments (S7 SZL, OPC UA endpoints, BACnet, HTTP) decode too. A flow is
  decoded when it ends (FIN or RST), when its buffer reaches ``MAX_FLOW_BYTES`` (it then restarts
  at the next segment), at a sequence gap (lost or unseen bytes: it restarts at the new segment),
  when it is evicted to keep at most ``MAX_FLOWS`` flows and ``MAX_BUFFERED_BYTES`` in memory, or
  when the reader closes them all. The stream may hold several frames and may be cut at its end.

A service on a non-default port is found by its client: a probe that also has
``matches_request(payload) -> bool`` (see :class:`RequestMatcher`) recognises the bytes a client
sends it (OPC UA ``HEL``, an IEC 104 STARTDT, an HTTP request line); the destination of a
matching payload is then decoded with that probe too. A SYN-ACK from any port proves an open TCP
service even when nothing decodes.

What a client sends to a known service is a conversation (the communication map): client, server,
port, protocol and the function class a :class:`~cybermission.traffic.RequestClassifier` gives it.

Every table is bounded whatever the traffic (a mirror port runs for months): flows, services and
conversations are kept least-recently-used first out; what leaves memory before it was drained
waits in a bounded list for the next drain, so a reader that drains often loses nothing.
"""

from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from socket import AF_INET, AF_INET6, inet_ntop
from typing import Protocol, runtime_checkable

from cybermission.errors import ProbeProtocolError
from cybermission.probes import Facts, Observation, PassiveDecoder, Transport
from cybermission.traffic import Conversation, FunctionClass, RequestClassifier
from scanners.frames import FIN, RST, SYN_ACK, Packet, is_group

MAX_FLOW_BYTES = 64 * 1024  # reassembled bytes kept per TCP direction before it is decoded
MAX_FLOWS = 4096  # TCP directions buffered at once; the least recently active is decoded first
MAX_BUFFERED_BYTES = 32 * 1024 * 1024  # all flows together
MAX_LEARNED_SERVICES = 4096  # non-default ports recognised from their clients' requests
MAX_LEARN_TRIES = 16  # payloads to one unknown endpoint tried against the matchers
MAX_SERVICES = 65_536  # (address, port, transport) endpoints kept with their facts
MAX_CONVERSATIONS = 65_536  # (client, server, port, protocol, function) rows kept
MAX_EVICTED = 65_536  # rows left memory before a drain; past that the oldest are dropped

_SEQ_MASK = 0xFFFFFFFF
_UNSET = object()

Endpoint = tuple[bytes, int, Transport]  # packed address, port, transport
_TalkKey = tuple[bytes, bytes, int, Transport, str, FunctionClass]


@runtime_checkable
class RequestMatcher(Protocol):
    """A decoder that recognises what a client sends it: finds its service on any port."""

    def matches_request(self, payload: bytes) -> bool: ...


@dataclass(slots=True)
class _Service:
    protocol: str
    probe: str
    facts: Facts = field(default_factory=dict)
    first_at: float = 0.0
    last_at: float = 0.0


@dataclass(slots=True)
class _Flow:
    """One server-to-client TCP direction being reassembled."""

    endpoint: Endpoint
    decoders: Sequence[PassiveDecoder]
    next_seq: int
    first_at: float
    data: bytearray = field(default_factory=bytearray)
    segments: int = 0


@dataclass(slots=True)
class _Talk:
    packets: int
    first_at: float
    last_at: float
    reported: int = 0  # packets already handed over by a drain: drains give what is new


@dataclass(frozen=True, slots=True)
class _Listener:
    """What a server port speaks, for its clients' requests: the protocols and classifiers of
    its decoders. A request no classifier knows is ``other`` of the port's one protocol, and
    not counted where the port has several (S7 and MMS share 102: which one is not known)."""

    classifiers: tuple[tuple[str, RequestClassifier], ...]
    only_protocol: str | None

    def classify(self, payload: bytes) -> tuple[str, FunctionClass] | None:
        for protocol, classifier in self.classifiers:
            try:
                function = classifier.classify_request(payload)
            except ProbeProtocolError:
                function = None
            if function is not None:
                return protocol, function
        if self.only_protocol is None:
            return None
        if self.classifiers:
            return None  # the protocol's own classifier says this is no request
        return self.only_protocol, FunctionClass.OTHER


class TrafficDecoder:
    """The state of one reading: decoders by port, flows, services and conversations seen."""

    def __init__(self, decoders: Sequence[PassiveDecoder]) -> None:
        self.by_port: dict[tuple[int, Transport], list[PassiveDecoder]] = {}
        # A probe that inherits its base probe's decoder (dnp3-attributes, mqtt-sys) reads the
        # same bytes to the same facts: the first one registered speaks for both.
        distinct: dict[tuple[object, Transport, tuple[int, ...]], PassiveDecoder] = {}
        for decoder in decoders:
            key = (type(decoder).decode_answer, decoder.transport, decoder.default_ports)
            distinct.setdefault(key, decoder)
        decoders = list(distinct.values())
        for decoder in decoders:
            for port in decoder.default_ports:
                self.by_port.setdefault((port, decoder.transport), []).append(decoder)
        self.listeners = {key: _listener_of(found) for key, found in self.by_port.items()}
        self.matchers = [d for d in decoders if isinstance(d, RequestMatcher)]
        self.learned: dict[Endpoint, list[PassiveDecoder]] = {}
        self.learned_listeners: dict[Endpoint, _Listener] = {}
        # Payloads sent to each unknown endpoint that no matcher recognised (a client's first
        # requests name its protocol; an answer stream to an ephemeral port never will).
        self.learn_tries: OrderedDict[Endpoint, int] = OrderedDict()
        self.flows: OrderedDict[tuple[bytes, int, bytes, int], _Flow] = OrderedDict()
        self.buffered_bytes = 0
        self.services: OrderedDict[Endpoint, dict[str, _Service]] = OrderedDict()
        self.talks: OrderedDict[_TalkKey, _Talk] = OrderedDict()
        # New services or facts (drained at every batch), services only seen again (drained
        # when the reader wants last sightings refreshed), conversations with new requests.
        self.changed: set[Endpoint] = set()
        self.touched: set[Endpoint] = set()
        self.changed_talks: set[_TalkKey] = set()
        self.evicted: deque[Observation] = deque(maxlen=MAX_EVICTED)
        self.evicted_talks: deque[Conversation] = deque(maxlen=MAX_EVICTED)
        self.dropped = 0  # rows that left memory undrained past MAX_EVICTED

    def read(self, packet: Packet, seen_at: float) -> None:
        if is_group(packet.source):
            return  # no device sends from a broadcast or multicast address: a forged packet
        transport = packet.transport
        endpoint = (packet.source, packet.sport, transport)
        if transport is Transport.TCP and (packet.flags & 0x3F) == SYN_ACK:
            found = self._service_entry(endpoint)
            if "" not in found:
                found[""] = _Service("tcp", "passive", first_at=seen_at, last_at=seen_at)
                self.changed.add(endpoint)
        if transport is Transport.UDP and packet.sport != packet.dport:
            self._decode_towards(packet, seen_at)
        decoders = self.by_port.get((packet.sport, transport)) or self.learned.get(endpoint)
        if decoders is None and packet.payload and self.matchers:
            self._learn(packet)
        if packet.payload and (decoders is None or packet.sport == packet.dport):
            self._talk(packet, seen_at)
        if decoders is None:
            return
        known = self.services.get(endpoint)
        if known is not None:  # still answering: its last sighting moves on
            for service in known.values():
                service.last_at = seen_at
            self.touched.add(endpoint)
        if packet.payload:
            for decoder in decoders:
                self._decode(decoder, endpoint, packet.payload, seen_at)
        if transport is Transport.TCP:
            self._reassemble(packet, endpoint, decoders, seen_at)

    def _talk(self, packet: Packet, seen_at: float) -> None:
        """A client's request to a known service: one more packet of its conversation."""
        server = (packet.destination, packet.dport, packet.transport)
        listener = self.listeners.get((packet.dport, packet.transport))
        if listener is None:
            listener = self.learned_listeners.get(server)
            if listener is None:
                return
        if is_group(packet.destination):
            return  # a broadcast (a who-is) has no one server
        classified = listener.classify(packet.payload)
        if classified is None:
            return  # an answer on a shared port, or bytes no decoder of the port reads
        key = (packet.source, packet.destination, packet.dport, packet.transport)
        talk_key = (*key, *classified)
        talk = self.talks.get(talk_key)
        if talk is None:
            self.talks[talk_key] = _Talk(1, seen_at, seen_at)
            while len(self.talks) > MAX_CONVERSATIONS:
                old_key, old = self.talks.popitem(last=False)
                if old_key in self.changed_talks:
                    self.changed_talks.discard(old_key)
                    self._keep(self.evicted_talks, _conversation(old_key, old))
        else:
            talk.packets += 1
            talk.last_at = seen_at
            self.talks.move_to_end(talk_key)
        self.changed_talks.add(talk_key)

    def _decode_towards(self, packet: Packet, seen_at: float) -> None:
        """A UDP answer sent *to* a probe's port from another port belongs to the destination.

        Some captures record answers with the request's addresses (``fins/fins.pcap``); the
        decoders only accept answers, so the requests to that port decode to nothing.
        """
        if is_group(packet.destination):
            return  # a broadcast answer (a BACnet I-Am) belongs to its sender only
        server = (packet.destination, packet.dport, packet.transport)
        for decoder in self.by_port.get((packet.dport, packet.transport), ()):
            if packet.sport not in decoder.default_ports:
                self._decode(decoder, server, packet.payload, seen_at)

    def _learn(self, packet: Packet) -> None:
        """A client request a probe recognises makes its destination a service of that probe."""
        server = (packet.destination, packet.dport, packet.transport)
        if server in self.learned or len(self.learned) >= MAX_LEARNED_SERVICES:
            return
        tries = self.learn_tries.pop(server, 0)
        if tries >= MAX_LEARN_TRIES:
            self.learn_tries[server] = tries  # kept, most recent last: a hopeless endpoint
            return
        matched = [m for m in self.matchers if m.matches_request(packet.payload)]
        if not matched:
            self.learn_tries[server] = tries + 1
            if len(self.learn_tries) > MAX_FLOWS:
                self.learn_tries.popitem(last=False)
        else:
            # Only PassiveDecoders are collected as matchers, so these are decoders too.
            found: list[PassiveDecoder] = [d for d in matched if isinstance(d, PassiveDecoder)]
            self.learned[server] = found
            self.learned_listeners[server] = _listener_of(found)

    def _reassemble(
        self, packet: Packet, endpoint: Endpoint, decoders: Sequence[PassiveDecoder], at: float
    ) -> None:
        key = (packet.source, packet.sport, packet.destination, packet.dport)
        flow = self.flows.get(key)
        payload = packet.payload
        if payload:
            seq = packet.seq
            if flow is not None:
                ahead = (seq - flow.next_seq) & _SEQ_MASK
                if ahead >= 1 << 31:  # retransmission or overlap: keep only the new bytes
                    payload = payload[(flow.next_seq - seq) & _SEQ_MASK :]
                    seq = flow.next_seq
                elif ahead:  # bytes missing from the capture: decode what came before
                    self._close(key)
                    flow = None
            if flow is not None and len(flow.data) + len(payload) > MAX_FLOW_BYTES:
                self._close(key)
                flow = None
            if flow is None:
                flow = _Flow(endpoint, decoders, next_seq=seq, first_at=at)
                self.flows[key] = flow
            if payload:
                kept = payload[:MAX_FLOW_BYTES]
                flow.data += kept
                flow.segments += 1
                flow.next_seq = (seq + len(payload)) & _SEQ_MASK
                self.buffered_bytes += len(kept)
                self.flows.move_to_end(key)
        if packet.flags & (FIN | RST):
            if flow is not None:
                self._close(key)
            if packet.flags & RST:  # the other direction ends with it
                reverse = (packet.destination, packet.dport, packet.source, packet.sport)
                if reverse in self.flows:
                    self._close(reverse)
        while self.flows and (
            len(self.flows) > MAX_FLOWS or self.buffered_bytes > MAX_BUFFERED_BYTES
        ):
            self._close(next(iter(self.flows)))

    def _close(self, key: tuple[bytes, int, bytes, int]) -> None:
        flow = self.flows.pop(key)
        self.buffered_bytes -= len(flow.data)
        if flow.segments < 2:
            return  # one segment was already decoded on its own
        stream = bytes(flow.data)
        for decoder in flow.decoders:
            # The stream holds every segment: its facts are the fuller view, they override.
            self._decode(decoder, flow.endpoint, stream, flow.first_at, override=True)

    def close_all(self) -> None:
        while self.flows:
            self._close(next(iter(self.flows)))

    def _service_entry(self, endpoint: Endpoint) -> dict[str, _Service]:
        found = self.services.get(endpoint)
        if found is None:
            found = self.services[endpoint] = {}
            while len(self.services) > MAX_SERVICES:
                old_endpoint, old = self.services.popitem(last=False)
                self.touched.discard(old_endpoint)
                if old_endpoint in self.changed:
                    self.changed.discard(old_endpoint)
                    for observation in _observations_of(old_endpoint, old):
                        self._keep(self.evicted, observation)
        else:
            self.services.move_to_end(endpoint)
        return found

    def _keep(self, evicted: "deque[Observation] | deque[Conversation]", row: object) -> None:
        if len(evicted) == evicted.maxlen:
            self.dropped += 1  # the oldest goes as this one comes in
        evicted.append(row)  # type: ignore[arg-type]  # the caller pairs queue and row kinds

    def _decode(
        self,
        decoder: PassiveDecoder,
        endpoint: Endpoint,
        payload: bytes,
        at: float,
        *,
        override: bool = False,
    ) -> None:
        try:
            facts = decoder.decode_answer(payload)
        except ProbeProtocolError:
            return  # a request, a fragment or another protocol on that port
        if not facts:
            return
        found = self._service_entry(endpoint)
        service = found.get(decoder.name)
        if service is None:
            service = _Service(
                protocol=decoder.protocol, probe=f"passive:{decoder.name}", first_at=at
            )
            found[decoder.name] = service
        service.last_at = max(service.last_at, at)
        known = service.facts
        if override:
            news = any(known.get(fact, _UNSET) != value for fact, value in facts.items())
            known.update(facts)
        else:
            news = any(fact not in known for fact in facts)
            for fact, value in facts.items():
                known.setdefault(fact, value)
        # A repeated answer (a poll) only moves the last sighting: no new row each batch.
        (self.changed if news else self.touched).add(endpoint)

    def pending(self) -> int:
        """Rows a drain would hand over now (changed since the last one, or evicted)."""
        return (
            len(self.changed)
            + len(self.changed_talks)
            + len(self.evicted)
            + len(self.evicted_talks)
        )

    def drain_observations(self, *, seen_again: bool = True) -> list[Observation]:
        """The services that changed since the last drain (new, new facts) and, with
        ``seen_again``, those only seen again (their last sighting), by address: one
        observation per (address, port, transport, probe) seen answering."""
        drained = list(self.evicted)
        self.evicted.clear()
        endpoints = self.changed | self.touched if seen_again else self.changed
        self.changed = set()
        if seen_again:
            self.touched = set()
        else:
            self.touched -= endpoints
        for endpoint in sorted(endpoints, key=lambda e: (len(e[0]), e)):
            drained.extend(_observations_of(endpoint, self.services[endpoint]))
        return drained

    def drain_conversations(self) -> list[Conversation]:
        """The conversations that had requests since the last drain, with their totals."""
        drained = list(self.evicted_talks)
        self.evicted_talks.clear()
        for key in sorted(self.changed_talks, key=lambda k: (len(k[0]), k[:4])):
            drained.append(_conversation(key, self.talks[key]))
        self.changed_talks = set()
        return drained


def _listener_of(decoders: Sequence[PassiveDecoder]) -> _Listener:
    classifiers = tuple((d.protocol, d) for d in decoders if isinstance(d, RequestClassifier))
    protocols = {d.protocol for d in decoders}
    return _Listener(classifiers, protocols.pop() if len(protocols) == 1 else None)


def _text(packed: bytes) -> str:
    return inet_ntop(AF_INET if len(packed) == 4 else AF_INET6, packed)


def _at(seen_at: float) -> datetime:
    return datetime.fromtimestamp(seen_at, UTC)


def _observations_of(endpoint: Endpoint, found: dict[str, _Service]) -> Iterator[Observation]:
    packed, port, transport = endpoint
    decoded = [s for name, s in sorted(found.items()) if name]
    for service in decoded or list(found.values()):
        yield Observation(
            probe=service.probe,
            protocol=service.protocol,
            address=_text(packed),
            port=port,
            transport=transport,
            facts={**service.facts, "passive": True},
            observed_at=_at(service.first_at),
        )


def _conversation(key: _TalkKey, talk: _Talk) -> Conversation:
    """The requests of ``talk`` not handed over yet (the store adds them up)."""
    client, server, port, transport, protocol, function = key
    packets, talk.reported = talk.packets - talk.reported, talk.packets
    return Conversation(
        client=_text(client),
        server=_text(server),
        port=port,
        transport=transport,
        protocol=protocol,
        function=function,
        packets=packets,
        first_seen_at=_at(talk.first_at),
        last_seen_at=_at(talk.last_at),
    )
