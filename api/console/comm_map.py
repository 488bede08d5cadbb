"""The device page's communication map, drawn on the server as inline SVG (no script, no library):
the device in the middle, each peer on a circle around it, one arrow per peer and direction, from
client to server, labelled with the protocols and function classes seen; an arrow that carried a
class changing the controller (write, program, control) is red and thick, one that carried
credentials in clear is orange, the rest grey. The rows themselves are listed beside it."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

from cybermission.inventory.communications import Communication
from cybermission.traffic import CHANGING, FunctionClass

WIDTH, HEIGHT = 760, 390
CENTRE_X, CENTRE_Y, ORBIT = WIDTH / 2, HEIGHT / 2, 150
NODE_R, CENTRE_R = 14, 22
MAX_PEERS = 12  # drawn; every row is in the table beside the drawing
# A white outline under each label keeps it readable where it crosses an arrow or another label.
HALO = 'paint-order="stroke" stroke="#fff" stroke-width="4" stroke-linejoin="round"'
COLOURS = {"changing": "#a4001d", "login": "#d9640c", "other": "#6b7280"}


@dataclass(slots=True)
class Link:
    """What flowed one way between the device and one peer (``inbound``: the peer is client)."""

    peer: str
    inbound: bool
    peer_device_id: str | None = None
    uses: dict[str, set[str]] = field(default_factory=dict)  # "protocol port" -> functions
    packets: int = 0

    @property
    def kind(self) -> str:
        functions = {f for fs in self.uses.values() for f in fs}
        if functions & {str(f) for f in CHANGING}:
            return "changing"
        return "login" if str(FunctionClass.LOGIN) in functions else "other"

    def label(self) -> str:
        return "; ".join(f"{use}: {', '.join(sorted(fs))}" for use, fs in sorted(self.uses.items()))


def device_links(rows: Sequence[Communication], device_id: str) -> list[Link]:
    """The rows of ``device_id`` (as client or server) grouped per peer and direction, busiest
    first."""
    links: dict[tuple[str, bool], Link] = {}
    for row in rows:
        inbound = row.server_device_id == device_id
        peer = row.client_address if inbound else row.server_address
        peer_device = row.client_device_id if inbound else row.server_device_id
        link = links.setdefault((peer, inbound), Link(peer=peer, inbound=inbound))
        link.peer_device_id = link.peer_device_id or peer_device
        link.uses.setdefault(f"{row.protocol} {row.port}", set()).add(row.function)
        link.packets += row.packets
    return sorted(links.values(), key=lambda k: (-k.packets, k.peer, k.inbound))


def comm_map_svg(links: Sequence[Link], *, centre: str, names: Mapping[str, str]) -> Markup:
    """The map of ``links`` around the device labelled ``centre``; ``names`` labels the peers
    that are devices the viewer may open (by device id), which link to their pages."""
    peers: list[tuple[str, str | None]] = []
    for link in links:
        if (link.peer, link.peer_device_id) not in peers:
            peers.append((link.peer, link.peer_device_id))
    drawn = peers[:MAX_PEERS]
    place = {peer: _on_orbit(i, len(drawn)) for i, (peer, _) in enumerate(drawn)}
    both = {lk.peer for lk in links if lk.inbound} & {lk.peer for lk in links if not lk.inbound}
    parts = [
        f'<svg id="comm-map-drawing" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-labelledby="comm-map-caption" xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="context-stroke"/></marker></defs>',
    ]
    for link in links:
        if link.peer not in place:
            continue
        parts.append(_arrow(link, place[link.peer], offset=5 if link.peer in both else 0))
    for peer, device_id in drawn:
        x, y = place[peer]
        # Labels sit outside the orbit, away from the arrows that meet in the middle.
        ox, oy = (x - CENTRE_X) / ORBIT, (y - CENTRE_Y) / ORBIT
        anchor = "middle" if abs(ox) < 0.35 else ("start" if ox > 0 else "end")
        lx = x + ox * (NODE_R + 6)
        ly = y + oy * (NODE_R + 6) + (12 if oy > 0.35 else -16 if oy < -0.35 else 4)
        node = (
            f'<g class="peer" data-peer={quoteattr(peer)}><circle cx="{x:.1f}" cy="{y:.1f}" '
            f'r="{NODE_R}" fill="#e5e7eb" stroke="#374151"/>'
            f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" font-size="12" '
            f'font-family="monospace">{escape(peer)}</text>'
        )
        name = names.get(device_id) if device_id else None
        if name:
            node += (
                f'<text x="{lx:.1f}" y="{ly + 13:.1f}" text-anchor="{anchor}" '
                f'font-size="11">{escape(name)}</text>'
            )
            node = f"<a href={quoteattr(f'/console/assets/{device_id}')}>{node}</g></a>"
        else:
            node += "</g>"
        parts.append(node)
    parts.append(
        f'<circle cx="{CENTRE_X}" cy="{CENTRE_Y}" r="{CENTRE_R}" fill="#1f4e79"/>'
        f'<text x="{CENTRE_X}" y="{CENTRE_Y + CENTRE_R + 15}" text-anchor="middle" '
        f'font-size="13" font-weight="bold" {HALO}>{escape(centre)}</text>'
    )
    if len(peers) > len(drawn):
        parts.append(
            f'<text x="8" y="{HEIGHT - 8}" font-size="12">and {len(peers) - len(drawn)} more '
            "peers: see the table</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  # every value above is escaped


def _on_orbit(index: int, count: int) -> tuple[float, float]:
    angle = -math.pi / 2 + 2 * math.pi * index / max(count, 1)
    return CENTRE_X + ORBIT * math.cos(angle), CENTRE_Y + ORBIT * math.sin(angle)


def _arrow(link: Link, peer_at: tuple[float, float], *, offset: float) -> str:
    """An arrow from client to server, stopped at both nodes' edges; two arrows between the same
    pair are drawn apart by ``offset`` on either side."""
    px, py = peer_at
    dx, dy = CENTRE_X - px, CENTRE_Y - py
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    side = offset if link.inbound else -offset
    nx, ny = -uy * side, ux * side
    start = (px + ux * NODE_R + nx, py + uy * NODE_R + ny)
    end = (CENTRE_X - ux * CENTRE_R + nx, CENTRE_Y - uy * CENTRE_R + ny)
    if not link.inbound:
        start, end = end, start
    colour = COLOURS[link.kind]
    width = 3 if link.kind == "changing" else 1.5
    # The label near the peer's end, beside its arrow: the middle is where arrows crowd.
    near, far = (start, end) if link.inbound else (end, start)
    lift = 1 if offset == 0 else 2
    mid_x = near[0] + (far[0] - near[0]) * 0.12 - uy * 10 * lift
    mid_y = near[1] + (far[1] - near[1]) * 0.12 + ux * 10 * lift
    direction = "in" if link.inbound else "out"
    return (
        f'<g class="link {link.kind}" data-peer={quoteattr(link.peer)} '
        f'data-direction="{direction}">'
        f"<title>{escape(link.label())}</title>"
        f'<line x1="{start[0]:.1f}" y1="{start[1]:.1f}" x2="{end[0]:.1f}" y2="{end[1]:.1f}" '
        f'stroke="{colour}" stroke-width="{width}" marker-end="url(#arrow)"/>'
        f'<text x="{mid_x:.1f}" y="{mid_y:.1f}" text-anchor="middle" font-size="11" '
        f'fill="{colour}" {HALO}>{escape(link.label())}</text></g>'
    )
