"""The communication map: who talks to whom, in which protocol, with which class of function."""

from datetime import datetime

from api.schemas import ReadModel


class CommunicationRead(ReadModel):
    id: str
    organization_id: str | None
    site_id: str | None
    client_address: str
    server_address: str
    port: int
    transport: str
    protocol: str
    # read, write, program, control, diagnostic or other (cybermission/traffic.py)
    function: str
    client_device_id: str | None
    server_device_id: str | None
    packets: int
    first_seen_at: datetime
    last_seen_at: datetime
