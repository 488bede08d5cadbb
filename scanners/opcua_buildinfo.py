"""Opt-in OPC UA BuildInfo read: who made the server and which software version it runs.

:class:`OpcUaBuildInfoProbe` (``opcua-buildinfo``, optional: named in
``enabled_optional_probes``) opens a session only where the server itself offers one to anyone:
an endpoint with SecurityPolicy None, MessageSecurityMode None and an Anonymous user token
(OPC 10000-4 §7.41). It then reads the Value attribute of the five ``ServerStatus.BuildInfo``
components (OPC 10000-5 §12.4, node ids 2261-2265) and closes the session and the channel. It
never browses, writes, calls a method or subscribes.

Sequence, one connection (:mod:`scanners.opcua` for the channel, :mod:`scanners.opcua_session`
for the session services): ``HEL``, ``OPN`` (None), ``GetEndpoints``; then, only when an anonymous
None endpoint is offered: ``CreateSession``, ``ActivateSession`` (AnonymousIdentityToken with that
endpoint's policy id), one ``Read`` of the five values, ``CloseSession``; always ``CLO``.

Outcomes: as :class:`scanners.opcua.OpcUaProbe`. A server without an anonymous None endpoint, or
one that refuses a session step, still gives an observation saying why (``build_info_unread``).

Facts keys (authority device: the server describes itself; on an embedded server, a PLC's or a
gateway's, BuildInfo is the device's firmware identity, on a PC the server program's):

- ``build_info`` (dict): ``manufacturer_name``, ``product_name``, ``product_uri``,
  ``software_version``, ``build_number``, as the server sent them (text, bounded).
- ``vendor`` (= ManufacturerName), ``product`` (= ProductName), ``firmware``
  (= SoftwareVersion), each when the server sent it.
- ``build_info_unread`` (str): why nothing was read (no anonymous None endpoint, a refusal).
"""

import logging
from typing import ClassVar

from cybermission.errors import ProbeTimeoutError
from cybermission.probes import (
    DEFAULT_PROBE_ORDER,
    Facts,
    IdentityAuthority,
    Intrusiveness,
    Manifest,
    ManifestEntry,
    Observation,
    ProbeTarget,
    Transport,
)
from scanners.opcua import (
    CHANNEL_ENTRIES,
    CLOSE_ENTRY,
    OPCUA_PORT,
    REQUEST_GET_ENDPOINTS,
    Conversation,
    observe_channel,
)
from scanners.opcua_binary import SECURITY_POLICY_NONE, USER_TOKEN_TYPES, Endpoint, ServiceFault
from scanners.opcua_session import (
    ID_ACTIVATE_SESSION_RESPONSE,
    ID_CLOSE_SESSION_RESPONSE,
    SessionTokens,
    activate_session_message,
    close_session_message,
    create_session_message,
    decode_create_session_response,
    decode_read_response,
    decode_status_response,
    read_build_info_message,
)

logger = logging.getLogger(__name__)

REQUEST_CREATE_SESSION = "msg/create-session"
REQUEST_ACTIVATE_SESSION = "msg/activate-session/anonymous"
REQUEST_READ_BUILD_INFO = "msg/read/build-info"
REQUEST_CLOSE_SESSION = "msg/close-session"

ANONYMOUS = USER_TOKEN_TYPES[0]
IDENTITY_KEYS = (
    ("manufacturer_name", "vendor"),
    ("product_name", "product"),
    ("software_version", "firmware"),
)


def anonymous_policy_id(endpoints: list[Endpoint]) -> str | None:
    """The Anonymous token's policy id of an endpoint without security, or ``None``."""
    for endpoint in endpoints:
        if endpoint.security_policy != SECURITY_POLICY_NONE or endpoint.security_mode != "None":
            continue
        for token in endpoint.user_tokens:
            if token.token_type == ANONYMOUS:
                return token.policy_id or ""
    return None


def build_info_facts(build_info: dict[str, str]) -> Facts:
    facts: Facts = {"build_info": dict(build_info)}
    for key, fact in IDENTITY_KEYS:
        if build_info.get(key):
            facts[fact] = build_info[key]
    return facts


class OpcUaBuildInfoProbe:
    """Opt-in anonymous read of an OPC UA server's BuildInfo (see the module docstring)."""

    name: ClassVar[str] = "opcua-buildinfo"
    protocol: ClassVar[str] = "opcua"
    default_ports: ClassVar[tuple[int, ...]] = (OPCUA_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = True
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            *CHANNEL_ENTRIES,
            ManifestEntry(REQUEST_GET_ENDPOINTS, 1, "MSG: GetEndpoints, to find anonymous None"),
            ManifestEntry(
                REQUEST_CREATE_SESSION, 1, "MSG: CreateSession, only on an anonymous None endpoint"
            ),
            ManifestEntry(
                REQUEST_ACTIVATE_SESSION, 1, "MSG: ActivateSession with an AnonymousIdentityToken"
            ),
            ManifestEntry(
                REQUEST_READ_BUILD_INFO,
                1,
                "MSG: Read, Value of ServerStatus.BuildInfo i=2261..2265 (5 nodes), nothing else",
            ),
            ManifestEntry(REQUEST_CLOSE_SESSION, 1, "MSG: CloseSession of the session it made"),
            CLOSE_ENTRY,
        ),
        connections_per_device=1,
        notes=(
            "opt-in; a session only where the server offers SecurityPolicy None with anonymous "
            "access; reads BuildInfo only: never Browse, Write, Call or subscriptions"
        ),
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        return await observe_channel(self, target, self._talk, timeout_s=timeout_s, answers=8)

    @staticmethod
    async def _talk(conversation: Conversation) -> Facts:
        await conversation.open()
        facts = await OpcUaBuildInfoProbe._read(conversation)
        await conversation.close()
        return facts

    @staticmethod
    async def _read(conversation: Conversation) -> Facts:
        endpoints = await conversation.get_endpoints()
        if isinstance(endpoints, ServiceFault):
            return {"build_info_unread": f"GetEndpoints refused 0x{endpoints.status_code:08x}"}
        policy_id = anonymous_policy_id(endpoints)
        if policy_id is None:
            return {"build_info_unread": "no endpoint offers SecurityPolicy None with Anonymous"}
        url = conversation.endpoint_url
        session = decode_create_session_response(
            await conversation.request(
                REQUEST_CREATE_SESSION,
                lambda c, t, seq, req: create_session_message(c, t, seq, req, url),
            )
        )
        if isinstance(session, ServiceFault):
            return {"build_info_unread": f"CreateSession refused 0x{session.status_code:08x}"}
        try:
            return await OpcUaBuildInfoProbe._read_in_session(conversation, session, policy_id)
        finally:
            await OpcUaBuildInfoProbe._close_session(conversation, session)

    @staticmethod
    async def _read_in_session(
        conversation: Conversation, session: SessionTokens, policy_id: str
    ) -> Facts:
        status = decode_status_response(
            await conversation.request(
                REQUEST_ACTIVATE_SESSION,
                lambda c, t, seq, req: activate_session_message(c, t, seq, req, session, policy_id),
            ),
            ID_ACTIVATE_SESSION_RESPONSE,
        )
        if status & 0x80000000:
            return {"build_info_unread": f"ActivateSession refused 0x{status:08x}"}
        values = decode_read_response(
            await conversation.request(
                REQUEST_READ_BUILD_INFO,
                lambda c, t, seq, req: read_build_info_message(c, t, seq, req, session),
            )
        )
        if isinstance(values, ServiceFault):
            return {"build_info_unread": f"Read refused 0x{values.status_code:08x}"}
        return build_info_facts(values)

    @staticmethod
    async def _close_session(conversation: Conversation, session: SessionTokens) -> None:
        """CloseSession; a server that does not answer it is left to time the session out."""
        try:
            body = await conversation.request(
                REQUEST_CLOSE_SESSION,
                lambda c, t, seq, req: close_session_message(c, t, seq, req, session),
            )
        except ProbeTimeoutError:
            logger.info(
                "opc ua close session unanswered", extra={"address": conversation.channel.address}
            )
            return
        decode_status_response(body, ID_CLOSE_SESSION_RESPONSE)
