"""The communication map: which client talks to which server's service, in which protocol, with
which class of function (read, write, program, control, diagnostic), per site, first and last
seen, as passive listening and capture imports saw it (issue 16)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter

from sqlalchemy import Index, or_
from sqlmodel import Field, Session, SQLModel, col, select

from cybermission.db import UTCDateTime, new_id
from cybermission.inventory.models import IPAddress
from cybermission.pagination import keyset_page
from cybermission.visibility import visible


class Communication(SQLModel, table=True):
    """Requests of one function class from a client to a server's service, added up."""

    __tablename__ = "communication"
    __table_args__ = (
        Index("ix_communication_server_address_port", "server_address", "port"),
        Index("ix_communication_organization_id_site_id", "organization_id", "site_id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    # Where the server was placed (its scope's organisation and site), like its device.
    organization_id: str | None = Field(default=None, foreign_key="organization.id")
    site_id: str | None = Field(default=None, foreign_key="site.id", index=True)
    client_address: str = Field(max_length=64)
    server_address: str = Field(max_length=64)
    port: int
    transport: str = Field(max_length=8)
    protocol: str = Field(max_length=50)
    function: str = Field(max_length=20)
    # The inventory's devices at those addresses when last seen (a client that never answered
    # anything has none).
    client_device_id: str | None = Field(default=None, foreign_key="device.id", index=True)
    server_device_id: str | None = Field(default=None, foreign_key="device.id", index=True)
    packets: int = 0
    first_seen_at: datetime = Field(sa_type=UTCDateTime)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)


@dataclass(frozen=True, slots=True)
class CommunicationSeen:
    """A batch's requests of one conversation, placed where its server is."""

    organization_id: str | None
    site_id: str | None
    client_address: str
    server_address: str
    port: int
    transport: str
    protocol: str
    function: str
    packets: int
    first_seen_at: datetime
    last_seen_at: datetime


# Who talks to whom (any service, any function), and a conversation's identity on the map, read
# the same way from a batch's row and a stored one.
_talker = attrgetter("organization_id", "site_id", "client_address", "server_address")
_key = attrgetter(
    "organization_id",
    "site_id",
    "client_address",
    "server_address",
    "port",
    "transport",
    "protocol",
    "function",
)


@dataclass(frozen=True, slots=True)
class RecordedCommunication:
    """A batch's conversation as the map now holds it, and what was new about it."""

    row: Communication
    new: bool  # this client had never sent this class of request to this service
    new_talker: bool  # this client had never been seen talking to this server at all


def record_communications(
    session: Session, seen: Sequence[CommunicationSeen]
) -> list[RecordedCommunication]:
    """Add a batch to the map in the caller's transaction, one result per item in order.

    Rows are found by their whole key (NULL organisation and site included, which a unique
    index would not match), so the map has one writer at a time per site: the run recording it.
    """
    if not seen:
        return []
    servers = {s.server_address for s in seen}
    existing = {
        _key(row): row
        for row in session.exec(
            select(Communication).where(col(Communication.server_address).in_(servers))
        ).all()
    }
    talkers = {_talker(row) for row in existing.values()}
    devices = _devices_at(session, servers | {s.client_address for s in seen})
    recorded: list[RecordedCommunication] = []
    for item in seen:
        row = existing.get(_key(item))
        new, new_talker = row is None, _talker(item) not in talkers
        if row is None:
            row = Communication(
                organization_id=item.organization_id,
                site_id=item.site_id,
                client_address=item.client_address,
                server_address=item.server_address,
                port=item.port,
                transport=item.transport,
                protocol=item.protocol,
                function=item.function,
                first_seen_at=item.first_seen_at,
                last_seen_at=item.last_seen_at,
            )
            existing[_key(item)] = row
            talkers.add(_talker(item))
            session.add(row)
        row.packets += item.packets
        row.first_seen_at = min(row.first_seen_at, item.first_seen_at)
        row.last_seen_at = max(row.last_seen_at, item.last_seen_at)
        organization = item.organization_id
        row.client_device_id = devices.get((organization, item.client_address))
        row.server_device_id = devices.get((organization, item.server_address))
        recorded.append(RecordedCommunication(row, new, new_talker))
    session.flush()
    return recorded


def _devices_at(session: Session, addresses: set[str]) -> dict[tuple[str | None, str], str]:
    """The device of each (organisation, address) the inventory holds."""
    rows = session.exec(select(IPAddress).where(col(IPAddress.address).in_(addresses))).all()
    return {(row.organization_id, row.address): row.device_id for row in rows}


def list_communications(
    *,
    session: Session,
    visible_to: str | None,
    site_id: str | None = None,
    device_id: str | None = None,
    protocol: str | None = None,
    function: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[Communication], str | None]:
    """The map ``visible_to`` sees, most recently seen first, filtered (``device_id``: as
    client or server), one keyset page at a time with the next page's cursor."""
    query = select(Communication).where(visible(col(Communication.organization_id), visible_to))
    if site_id is not None:
        query = query.where(col(Communication.site_id) == site_id)
    if device_id is not None:
        query = query.where(
            or_(
                col(Communication.client_device_id) == device_id,
                col(Communication.server_device_id) == device_id,
            )
        )
    if protocol is not None:
        query = query.where(col(Communication.protocol) == protocol)
    if function is not None:
        query = query.where(col(Communication.function) == function)
    return keyset_page(
        session,
        query,
        sort="-last_seen_at",
        key=col(Communication.last_seen_at),
        ident=col(Communication.id),
        value_of=lambda c: c.last_seen_at,
        limit=limit,
        cursor=cursor,
        descending=True,
    )
