"""What listening to traffic shows beside observations: who talks to whom, in which protocol, and
with which class of function (the communication map, issue 16).

The live sensor and the capture import both yield :class:`Conversation` rows from one decoder
(``scanners/traffic.py``); the store keeps them per site
(``cybermission/inventory/communications.py``).
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from cybermission.probes import Transport


class FunctionClass(StrEnum):
    """What a client's request does to the server, as a safety team ranks it."""

    READ = "read"  # reads values, identity or state
    WRITE = "write"  # changes values or outputs (a register, a tag, an operate)
    PROGRAM = "program"  # changes the logic: download, upload, delete blocks
    CONTROL = "control"  # changes the run state: start, stop, restart, reset
    DIAGNOSTIC = "diagnostic"  # discovery and diagnostics (list identity, SZL, who-is)
    LOGIN = "login"  # credentials sent in clear text (FTP USER/PASS, HTTP Basic)
    OTHER = "other"  # a request of a protocol the decoder does not classify


# The classes that change a controller: what rules about unexpected clients watch.
CHANGING = frozenset({FunctionClass.WRITE, FunctionClass.PROGRAM, FunctionClass.CONTROL})


@runtime_checkable
class RequestClassifier(Protocol):
    """A decoder that tells what a client's request does (``classify_request``).

    It gets the payload a client sent to the probe's port (one UDP datagram or TCP segment) and
    returns its class, or ``None`` when the bytes are not a request it knows (an answer on a
    shared port, a fragment): such packets are not counted as a conversation.
    """

    def classify_request(self, payload: bytes) -> FunctionClass | None: ...


@dataclass(slots=True)
class Conversation:
    """Requests from one client to one server's service, of one function class."""

    client: str
    server: str
    port: int
    transport: Transport
    protocol: str
    function: FunctionClass
    packets: int
    first_seen_at: datetime
    last_seen_at: datetime
