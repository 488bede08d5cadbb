"""What a client's request does: the function class of ICS protocol requests seen in traffic.

The communication map (``scanners/traffic.py``) counts requests per client, server and class;
passive rules watch writes, program changes and run-state changes from unexpected clients. Each
probe that can classify its protocol's requests points ``classify_request`` at one function here.

Every function reads untrusted bytes: lengths are checked, and bytes that are not a request of
that protocol (an answer on a shared port, a fragment, another protocol) give ``None``.
"""

import struct

from cybermission.traffic import FunctionClass

READ = FunctionClass.READ
WRITE = FunctionClass.WRITE
PROGRAM = FunctionClass.PROGRAM
CONTROL = FunctionClass.CONTROL
DIAGNOSTIC = FunctionClass.DIAGNOSTIC
OTHER = FunctionClass.OTHER
LOGIN = FunctionClass.LOGIN

# Modbus Application Protocol V1.1b3 §6: public function codes.
_MODBUS: dict[int, FunctionClass] = {
    **dict.fromkeys((1, 2, 3, 4, 20, 24), READ),  # coils, inputs, registers, file record, FIFO
    **dict.fromkeys((5, 6, 15, 16, 21, 22, 23), WRITE),  # 23: read/write multiple registers
    **dict.fromkeys((7, 8, 11, 12, 17, 43), DIAGNOSTIC),  # status, diagnostics, server id, MEI
    126: PROGRAM,  # Schneider's Modicon programming function (Concept, ProWORX)
}
# Schneider UMAS (Modbus FC 90) sub-functions, as published by the UMAS analyses the Modicon
# advisories cite: reservation and run state, project up/download, variables.
_UMAS: dict[int, FunctionClass] = {
    **dict.fromkeys((0x01, 0x02, 0x03, 0x04, 0x06, 0x12, 0x58), DIAGNOSTIC),
    **dict.fromkeys((0x20, 0x22, 0x24, 0x26, 0x28, 0x50), READ),
    **dict.fromkeys((0x23, 0x25, 0x29), WRITE),
    **dict.fromkeys((0x10, 0x11, 0x40, 0x41), CONTROL),  # reservation, start, stop
    **dict.fromkeys(range(0x30, 0x38), PROGRAM),  # download, upload, backup, restore
}
_FC_UMAS = 0x5A


def classify_modbus(payload: bytes) -> FunctionClass | None:
    """Modbus/TCP: the first frame's function code (MBAP: 7 bytes, then the PDU)."""
    if len(payload) < 8 or payload[2:4] != b"\x00\x00":
        return None  # protocol id 0 is Modbus
    (length,) = struct.unpack_from(">H", payload, 4)
    if length < 2:
        return None
    code = payload[7]
    if code & 0x80:
        return None  # an exception answer
    if code == _FC_UMAS:
        return _UMAS.get(payload[9], OTHER) if len(payload) > 9 else None
    return _MODBUS.get(code, OTHER)


# S7comm job functions (the S7comm dissector's table): read, write, block transfer, run state.
_S7_JOB: dict[int, FunctionClass] = {
    0x04: READ,
    0x05: WRITE,
    **dict.fromkeys(range(0x1A, 0x20), PROGRAM),  # request/download/end download, upload x3
    0x28: CONTROL,  # PI service: start, compress, delete blocks
    0x29: CONTROL,  # PLC stop
    0xF0: DIAGNOSTIC,  # setup communication
}


def classify_s7(payload: bytes) -> FunctionClass | None:
    """S7comm over ISO-on-TCP: TPKT (4), COTP data (3), then the S7 header (RFC 1006, 2126)."""
    if len(payload) < 8 or payload[0] != 3 or payload[5] != 0xF0:
        return None  # not a COTP data TPDU (connection requests carry no function)
    s7 = payload[4 + 1 + payload[4] :]
    if len(s7) < 10 or s7[0] != 0x32:
        return None
    rosctr = s7[1]
    if rosctr == 0x07:
        return DIAGNOSTIC  # userdata: SZL reads, clock, cyclic data, block info
    if rosctr != 0x01 or len(s7) < 11:
        return None  # acks and answers
    return _S7_JOB.get(s7[10], OTHER)


# IEEE 1815 (DNP3) application function codes, master to outstation.
_DNP3: dict[int, FunctionClass] = {
    1: READ,
    **dict.fromkeys((2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 20, 21, 22, 24), WRITE),
    **dict.fromkeys((13, 14, 15, 16, 17, 18), CONTROL),  # restarts, init, start/stop application
    **dict.fromkeys((19, 25, 26, 27, 28, 29, 30, 31), PROGRAM),  # save configuration, files
    23: DIAGNOSTIC,  # delay measurement
}


def classify_dnp3(payload: bytes) -> FunctionClass | None:
    """DNP3 over TCP: link header (10 bytes, start 0x0564), then transport, control, function."""
    if len(payload) < 13 or payload[0:2] != b"\x05\x64" or not payload[3] & 0x80:
        return None  # DIR bit clear: sent by an outstation
    if payload[2] <= 5:
        return None  # a link-layer frame with no user data
    code = payload[12]
    if code == 0 or code >= 0x81:
        return None  # confirm, responses, unsolicited responses
    return _DNP3.get(code, OTHER)


def classify_iec104(payload: bytes) -> FunctionClass | None:
    """IEC 60870-5-104: APCI (start 0x68, length, 4 control bytes) and the ASDU's type id."""
    if len(payload) < 6 or payload[0] != 0x68:
        return None
    control = payload[2]
    if control & 0x03 == 0x03:
        return DIAGNOSTIC if control & 0x54 else None  # U-format: STARTDT/STOPDT/TESTFR act
    if control & 0x01 or len(payload) < 7:
        return None  # S-format acknowledgements
    type_id = payload[6]
    if 45 <= type_id <= 69 or 110 <= type_id <= 113 or type_id == 103:
        return WRITE  # commands, set-points, parameters, clock synchronisation
    if type_id in (100, 101, 102):
        return READ  # interrogation, counter interrogation, read
    if type_id == 105:
        return CONTROL  # reset process
    if type_id in (104, 106, 107):
        return DIAGNOSTIC  # test, delay acquisition
    if 120 <= type_id <= 127:
        return PROGRAM  # file transfer
    return None  # monitor-direction types: sent by the outstation


_BACNET_CONFIRMED: dict[int, FunctionClass] = {
    **dict.fromkeys((5, 6, 12, 14, 26), READ),  # subscribeCOV, atomicReadFile, read property
    **dict.fromkeys((8, 9, 10, 11, 15, 16), WRITE),  # list elements, objects, write property
    **dict.fromkeys((17, 20), CONTROL),  # device communication control, reinitialize device
    7: PROGRAM,  # atomicWriteFile
}
_BACNET_UNCONFIRMED: dict[int, FunctionClass] = {
    **dict.fromkeys((7, 8), DIAGNOSTIC),  # who-has, who-is
    **dict.fromkeys((6, 9), WRITE),  # time synchronisation
}


def classify_bacnet(payload: bytes) -> FunctionClass | None:
    """BACnet/IP: BVLC (Annex J), NPDU (clause 6) then the APDU's type and service choice."""
    if len(payload) < 6 or payload[0] != 0x81:
        return None
    offset = 4 + (6 if payload[1] == 0x04 else 0)  # a forwarded NPDU carries its origin
    if len(payload) < offset + 2 or payload[offset] != 0x01:
        return None
    control = payload[offset + 1]
    if control & 0x80:
        return None  # a network-layer message
    offset += 2
    if control & 0x20:  # destination: DNET, DLEN, DADR (and a hop count after the source)
        if len(payload) < offset + 3:
            return None
        offset += 3 + payload[offset + 2]
    if control & 0x08:  # source: SNET, SLEN, SADR
        if len(payload) < offset + 3:
            return None
        offset += 3 + payload[offset + 2]
    if control & 0x20:
        offset += 1
    apdu = payload[offset:]
    if len(apdu) < 2:
        return None
    kind = apdu[0] >> 4
    if kind == 1:
        return _BACNET_UNCONFIRMED.get(apdu[1])  # I-Am, COV notifications: not requests
    if kind != 0:
        return None  # acks, errors, rejects, aborts
    service_at = 5 if apdu[0] & 0x08 else 3  # a segmented request adds sequence and window
    return _BACNET_CONFIRMED.get(apdu[service_at], OTHER) if len(apdu) > service_at else None


_CIP: dict[int, FunctionClass] = {
    **dict.fromkeys((0x01, 0x03, 0x0E, 0x4C, 0x52), READ),  # get attributes, read tag (frag.)
    **dict.fromkeys((0x02, 0x04, 0x08, 0x09, 0x10, 0x4D, 0x4E, 0x53), WRITE),  # set, write tag
    **dict.fromkeys((0x05, 0x06, 0x07), CONTROL),  # reset, start, stop
}
_ENIP_LIST = frozenset({0x0004, 0x0063, 0x0064})  # ListServices, ListIdentity, ListInterfaces
_ENIP_SEND = frozenset({0x006F, 0x0070})  # SendRRData, SendUnitData
_CONNECTION_MANAGER = 0x06


def classify_enip(payload: bytes) -> FunctionClass | None:
    """EtherNet/IP: the encapsulation command; for CIP messages, the CIP service (Vol. 1 App. A).

    Requests to the connection manager open or close connections (``OTHER``); an Unconnected
    Send carries the request it forwards, classified in its place.
    """
    if len(payload) < 24:
        return None
    (command,) = struct.unpack_from("<H", payload)
    if command in _ENIP_LIST:
        return DIAGNOSTIC
    if command not in _ENIP_SEND or len(payload) < 32:
        return None  # sessions (register, unregister) and NOP carry no function
    (count,) = struct.unpack_from("<H", payload, 30)
    offset = 32
    for _ in range(min(count, 4)):
        if len(payload) < offset + 4:
            return None
        kind, length = struct.unpack_from("<HH", payload, offset)
        data = payload[offset + 4 : offset + 4 + length]
        offset += 4 + length
        if kind == 0x00B2:
            return _classify_cip(data)
        if kind == 0x00B1:
            return _classify_cip(data[2:])  # connected data: a sequence count first
    return None


def _classify_cip(message: bytes, depth: int = 0) -> FunctionClass | None:
    if len(message) < 2 or message[0] & 0x80:
        return None  # a reply
    service, path_words = message[0], message[1]
    path = message[2 : 2 + 2 * path_words]
    if path[:2] == bytes([0x20, _CONNECTION_MANAGER]):
        embedded = message[2 + 2 * path_words + 4 :]  # priority, ticks, embedded size
        if service == 0x52 and depth == 0:
            return _classify_cip(embedded, depth + 1)
        return OTHER  # forward open and close
    return _CIP.get(service, OTHER)


_FTP: dict[bytes, FunctionClass] = {
    **dict.fromkeys((b"USER", b"PASS", b"ACCT"), LOGIN),  # RFC 959 §4.1.1, in clear text
    **dict.fromkeys((b"RETR", b"LIST", b"NLST", b"SIZE", b"MDTM"), READ),
    **dict.fromkeys((b"STOR", b"STOU", b"APPE", b"DELE", b"RNFR", b"RNTO", b"MKD", b"RMD"), WRITE),
}


def classify_ftp(payload: bytes) -> FunctionClass | None:
    """FTP control commands (RFC 959): a login sends its password in clear text."""
    line = payload[:512].split(b"\r\n", 1)[0]
    verb = line.split(b" ", 1)[0].upper()
    if not 3 <= len(verb) <= 4 or not verb.isalpha():
        return None
    return _FTP.get(verb, OTHER)


_HTTP_READS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
_HTTP_WRITES = frozenset({b"POST", b"PUT", b"PATCH", b"DELETE"})


def classify_http(payload: bytes) -> FunctionClass | None:
    """An HTTP/1.x request: Basic credentials (RFC 7617, base64 is not encryption) make it a
    login; else reads and writes by method. TLS bytes on 443 are no request: ``None``."""
    head = payload[:8192]
    method = head.split(b" ", 1)[0]
    if method not in _HTTP_READS and method not in _HTTP_WRITES:
        return None
    headers = head.split(b"\r\n\r\n", 1)[0].lower()
    if b"\r\nauthorization: basic " in headers:
        return LOGIN
    return READ if method in _HTTP_READS else WRITE
