"""BACnet/IP identification: unicast Who-Is, then ReadPropertyMultiple on the Device object.

Frames are built by hand (ANSI/ASHRAE 135-2020: Annex J BVLL, clause 6 NPDU, clause 20 APDU
encoding, in :mod:`scanners.bacnet_encoding`) and answers decoded defensively: every tag length is
checked against the datagram, strings are bounded, tag and property counts are capped.

Sequence (each request one UDP datagram and one answer, from one source port):

1. ``who-is``: unicast Who-Is without a range (§16.10). The I-Am gives the device instance,
   max APDU, segmentation and vendor id. Devices that answer I-Am only by broadcast stay silent to
   us; the probe then goes on with the wildcard instance 4194303 (§12.11.1 "Object_Identifier").
2. ``read-property-multiple/device``: one ReadPropertyMultiple (§15.7) of the Device object's
   identity properties (``DEVICE_PROPERTIES``), unsegmented, max APDU 1476.
3. ``read-property/device``: only when the device rejects or aborts ReadPropertyMultiple (older
   devices lack it), one ReadProperty (§15.5) per identity property; a silent answer stops there.

Outcomes: no answer at all -> ``ProbeTimeoutError`` (the pipeline reads a UDP timeout as
silence); an answer that is not BACnet/IP -> ``ProbeProtocolError``; an identity -> facts.

Facts keys (strings printable, at most ``bacnet_encoding.MAX_VALUE_BYTES`` bytes before decoding):

- ``instance`` (int): device object instance; ``object_identifier`` (str) "device,<instance>".
- ``vendor_id`` (int) and ``vendor_id_name`` (str, from :data:`BACNET_VENDORS` when listed).
- ``vendor`` (str): the vendor-name property, else the vendor id's name.
- ``vendor_name``, ``model`` (model-name), ``firmware`` (firmware-revision),
  ``application_software`` (application-software-version), ``object_name``, ``location``,
  ``description``, ``serial`` (serial-number, 135-2016 and later): str, when offered.
- ``protocol_version``, ``protocol_revision`` (int), ``max_apdu`` (int), ``segmentation`` (str).
- ``secure_connect`` (bool): always false here: this is BACnet/IP over UDP, not BACnet/SC.
- ``property_errors`` (dict[str, str]): property -> "class/code" for properties refused.
- ``services``: which requests answered ("who-is", "rpm", "rp").
- ``incomplete`` (str): a later request went unanswered.
"""

import logging
from collections.abc import Mapping
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.probes import (
    DEFAULT_PROBE_ORDER,
    Facts,
    IdentityAuthority,
    Intrusiveness,
    JSONValue,
    Manifest,
    ManifestEntry,
    Observation,
    ProbeTarget,
    Transport,
)
from cybermission.traffic import FunctionClass
from scanners.bacnet_encoding import (
    OBJECT_TYPE_DEVICE,
    PDU_ABORT,
    PDU_COMPLEX_ACK,
    PDU_ERROR,
    PDU_REJECT,
    PDU_UNCONFIRMED,
    SERVICE_I_AM,
    SERVICE_READ_PROPERTY,
    SERVICE_READ_PROPERTY_MULTIPLE,
    Apdu,
    IAm,
    PropertyResults,
    decode_datagram,
    decode_i_am,
    decode_rp_ack,
    decode_rpm_ack,
    error_text,
    object_id,
    parse_tags,
    rp_request,
    rpm_request,
    who_is_request,
)
from scanners.bacnet_vendors import BACNET_VENDORS
from scanners.requests import classify_bacnet
from scanners.stream import observation

logger = logging.getLogger(__name__)

BACNET_IP_PORT = 47808
WILDCARD_INSTANCE = 4194303  # §12.11.1: "this device", whatever its instance

REQUEST_WHO_IS = "who-is"
REQUEST_RPM = "read-property-multiple/device"
REQUEST_RP = "read-property/device"

# Property identifiers (§21 BACnetPropertyIdentifier) -> fact name.
DEVICE_PROPERTIES: Mapping[int, str] = {
    75: "object_identifier",
    77: "object_name",
    121: "vendor_name",
    120: "vendor_id",
    70: "model",
    44: "firmware",
    12: "application_software",
    58: "location",
    28: "description",
    372: "serial",
    98: "protocol_version",
    139: "protocol_revision",
}

SEGMENTATION = {0: "both", 1: "transmit", 2: "receive", 3: "none"}


def identity_facts(i_am: IAm | None, results: PropertyResults) -> Facts:
    """Facts from the I-Am and the property values read (see the module docstring)."""
    facts: Facts = {"secure_connect": False}
    instance = results.object_instance
    if i_am is not None:
        instance = i_am.instance if instance is None else instance
        facts["max_apdu"] = i_am.max_apdu
        facts["segmentation"] = SEGMENTATION.get(i_am.segmentation, str(i_am.segmentation))
        facts["vendor_id"] = i_am.vendor_id
    for prop, name in DEVICE_PROPERTIES.items():
        value = results.values.get(prop)
        if value is None or value == "":
            continue
        if name == "object_identifier":
            if isinstance(value, str) and value.startswith(f"{OBJECT_TYPE_DEVICE},"):
                instance = int(value.split(",", 1)[1])
            continue
        facts[name] = value
    if instance is not None and instance != WILDCARD_INSTANCE:
        facts["instance"] = instance
        facts["object_identifier"] = f"device,{instance}"
    vendor_id = facts.get("vendor_id")
    if isinstance(vendor_id, int) and vendor_id in BACNET_VENDORS:
        facts["vendor_id_name"] = BACNET_VENDORS[vendor_id]
    vendor = facts.get("vendor_name") or facts.get("vendor_id_name")
    if isinstance(vendor, str) and vendor:
        facts["vendor"] = vendor
    if results.errors:
        facts["property_errors"] = {
            DEVICE_PROPERTIES.get(prop, str(prop)): text for prop, text in results.errors.items()
        }
    return facts


class BacnetProbe:
    """Read-only BACnet/IP identification of one device (see the module docstring)."""

    name: ClassVar[str] = "bacnet"
    protocol: ClassVar[str] = "bacnet"
    default_ports: ClassVar[tuple[int, ...]] = (BACNET_IP_PORT,)
    transport: ClassVar[Transport] = Transport.UDP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_WHO_IS, 1, "unicast Who-Is without range"),
            ManifestEntry(REQUEST_RPM, 1, "ReadPropertyMultiple of the Device identity properties"),
            ManifestEntry(
                REQUEST_RP,
                len(DEVICE_PROPERTIES),
                "ReadProperty per identity property, only if RPM is rejected",
            ),
        ),
        connections_per_device=1,
        notes="datagrams, one at a time; reads the Device object only",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        services: list[JSONValue] = []
        i_am: IAm | None = None
        target.ledger.spend(REQUEST_WHO_IS)
        try:
            answer = await target.connector.exchange_udp(
                target.address, target.port, who_is_request(), timeout_s=timeout_s
            )
        except ProbeTimeoutError:
            answer = None
        except OSError as exc:  # ICMP port unreachable: nothing listens
            raise ProbeTimeoutError(f"{target.address}:{target.port}/udp unreachable") from exc
        if answer is not None:
            i_am = decode_i_am(self._decode(answer, target))
            services.append("who-is")
        instance = i_am.instance if i_am is not None else WILDCARD_INSTANCE
        results = PropertyResults()
        incomplete: str | None = None
        properties = list(DEVICE_PROPERTIES)
        target.ledger.spend(REQUEST_RPM)
        try:
            reply = self._decode(
                await target.connector.exchange_udp(
                    target.address,
                    target.port,
                    rpm_request(1, instance, properties),
                    timeout_s=timeout_s,
                ),
                target,
            )
        except ProbeTimeoutError:
            if i_am is None:
                raise
            reply = None
            incomplete = "read-property-multiple unanswered"
        except OSError as exc:
            raise ProbeTimeoutError(f"{target.address}:{target.port}/udp unreachable") from exc
        if reply is not None:
            self._check_reply(reply, 1, SERVICE_READ_PROPERTY_MULTIPLE)
            if reply.pdu_type == PDU_COMPLEX_ACK and not reply.segmented:
                results = decode_rpm_ack(reply.body)
                services.append("rpm")
            elif reply.pdu_type == PDU_ERROR and i_am is None:
                # The wildcard instance is not understood and no I-Am told the real one.
                raise ProbeProtocolError(f"{target.address}: wildcard device read refused")
            else:
                incomplete = await self._read_each(target, instance, results, timeout_s=timeout_s)
                if results.values:
                    services.append("rp")
        facts = identity_facts(i_am, results)
        facts["services"] = services
        if incomplete:
            facts["incomplete"] = incomplete
        return observation(self, target, facts)

    def classify_request(self, payload: bytes) -> FunctionClass | None:
        """What a client's request does (the communication map, ``scanners/requests.py``)."""
        return classify_bacnet(payload)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded datagram (passive import): an I-Am, or a ReadProperty(Multiple)
        ACK about a Device object; reads of other objects and requests give ``None``."""
        apdu = decode_datagram(payload)
        results = PropertyResults()
        i_am: IAm | None = None
        if apdu.pdu_type == PDU_UNCONFIRMED and apdu.service == SERVICE_I_AM:
            i_am = decode_i_am(apdu)
        elif apdu.pdu_type != PDU_COMPLEX_ACK or apdu.segmented:
            return None
        elif apdu.service == SERVICE_READ_PROPERTY_MULTIPLE:
            results = decode_rpm_ack(apdu.body)
            if results.object_instance is None:
                return None  # another object's properties: not the device's identity
        elif apdu.service == SERVICE_READ_PROPERTY:
            instance, prop, value = decode_rp_ack(apdu.body)
            object_type, _ = object_id(parse_tags(apdu.body)[0].data)
            if object_type != OBJECT_TYPE_DEVICE or prop not in DEVICE_PROPERTIES:
                return None
            results.object_instance = instance
            if value is not None:
                results.values[prop] = value
        else:
            return None
        return identity_facts(i_am, results)

    @staticmethod
    def _decode(datagram: bytes, target: ProbeTarget) -> Apdu:
        try:
            return decode_datagram(datagram)
        except ProbeProtocolError:
            logger.warning(
                "bacnet answer does not decode",
                extra={"address": target.address, "port": target.port},
            )
            raise

    @staticmethod
    def _check_reply(reply: Apdu, invoke_id: int, service: int) -> None:
        if reply.invoke_id != invoke_id:
            raise ProbeProtocolError(
                f"answer for invoke id {reply.invoke_id}, expected {invoke_id}"
            )
        if reply.pdu_type in (PDU_COMPLEX_ACK, PDU_ERROR) and reply.service != service:
            raise ProbeProtocolError(f"answer for service {reply.service}, expected {service}")
        if reply.pdu_type not in (PDU_COMPLEX_ACK, PDU_ERROR, PDU_REJECT, PDU_ABORT):
            raise ProbeProtocolError(f"APDU type {reply.pdu_type} does not answer a read")

    async def _read_each(
        self, target: ProbeTarget, instance: int, results: PropertyResults, *, timeout_s: float
    ) -> str | None:
        """ReadProperty per identity property (RPM was rejected); stops at the first silence."""
        for invoke_id, prop in enumerate(DEVICE_PROPERTIES, start=2):
            target.ledger.spend(REQUEST_RP)
            try:
                reply = self._decode(
                    await target.connector.exchange_udp(
                        target.address,
                        target.port,
                        rp_request(invoke_id, instance, prop),
                        timeout_s=timeout_s,
                    ),
                    target,
                )
            except (ProbeTimeoutError, OSError):
                return f"read-property {DEVICE_PROPERTIES[prop]} unanswered"
            self._check_reply(reply, invoke_id, SERVICE_READ_PROPERTY)
            if reply.pdu_type == PDU_COMPLEX_ACK and not reply.segmented:
                object_instance, answered, value = decode_rp_ack(reply.body)
                if answered == prop and value is not None:
                    results.values[prop] = value
                if instance == WILDCARD_INSTANCE:
                    results.object_instance = object_instance
            elif reply.pdu_type == PDU_ERROR:
                results.errors[prop] = error_text(parse_tags(reply.body))
            else:
                results.errors[prop] = "rejected"
        return None
