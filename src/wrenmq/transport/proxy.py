"""PROXY protocol v1 (text) and v2 (binary) headers, sans-IO.

A load balancer such as HAProxy or an AWS NLB, configured to "send-proxy", writes one header
before the client's bytes that names the client's real address. :class:`ProxyHeaderReader` takes
bytes as they arrive and returns the :class:`ProxyHeader` once it is complete; the bytes after it
(``rest``) belong to the protocol behind (MQTT, TLS, or HTTP for WebSocket). A reader that must
not consume them at all reads only as much as the header may still need (``ProxyGate`` in
:mod:`wrenmq.transport.tcp`). Anything that is not a well-formed header raises
:class:`ProxyProtocolError` as soon as it can be told apart from one, so a client that skips the
proxy is refused on its first byte.

Written from the specification "The PROXY protocol, Versions 1 & 2" (haproxy.org, 2020/03/05);
section numbers below refer to it.

Imports: the standard library (no IO, no clock) and :mod:`wrenmq.errors`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from wrenmq.errors import WrenError

__all__ = [
    "V1_MAX_LENGTH",
    "V2_FIXED",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderReader",
    "ProxyProtocolError",
    "parse_header",
]

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # 2.1: the longest v1 line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # 2.2: 12 bytes that no text protocol starts with
V2_FIXED = 16  # signature, version/command, family/transport, length

# 2.2: address lengths by the family nibble of the 14th byte (AF_UNSPEC, INET, INET6, UNIX).
_V2_ADDRESS_LENGTH = {0x0: 0, 0x1: 12, 0x2: 36, 0x3: 216}
_V1_FAMILIES = {"TCP4": 4, "TCP6": 6}


class ProxyProtocolError(WrenError):
    """The bytes are not a well-formed PROXY protocol header; close the connection."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed PROXY header.

    Attributes:
        version: 1 (text) or 2 (binary).
        source: The client's (address, port) as the proxy saw it, or None when the header
            carries no IP address (v1 ``UNKNOWN``, v2 ``LOCAL``, ``AF_UNSPEC`` or ``AF_UNIX``):
            the connection's own peer address stands then.
        destination: The (address, port) the client connected to, or None like ``source``.
        local: True for a v2 ``LOCAL`` command (the proxy's own connection, e.g. a health check).
        tlvs: v2 type-length-value extensions in order, as (type, value) pairs.
    """

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    local: bool = False
    tlvs: tuple[tuple[int, bytes], ...] = ()


def parse_header(data: bytes | bytearray | memoryview) -> tuple[ProxyHeader, int] | None:
    """Parse a PROXY header at the start of ``data``.

    Returns:
        ``(header, length)`` with the header's length in bytes, or None while ``data`` is a
        proper beginning of a header and more bytes are needed.

    Raises:
        ProxyProtocolError: ``data`` does not start with a PROXY header, or the header is
            malformed.
    """
    view = memoryview(data)
    n = len(view)
    if view[: min(n, len(V2_SIGNATURE))] == V2_SIGNATURE[:n]:
        return _parse_v2(view) if n >= len(V2_SIGNATURE) else None
    if view[: min(n, len(V1_PREFIX))] == V1_PREFIX[:n]:
        return _parse_v1(bytes(view[:V1_MAX_LENGTH])) if n >= len(V1_PREFIX) else None
    raise ProxyProtocolError(f"no PROXY protocol signature (first bytes {bytes(view[:8])!r})")


class ProxyHeaderReader:
    """Collects the bytes of one connection until its PROXY header is complete.

    ``feed`` returns None until the header is complete, then the header once; afterwards
    ``rest`` holds the bytes that followed it in the same reads.
    """

    __slots__ = ("_buffer", "header", "rest")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.header: ProxyHeader | None = None
        self.rest = b""

    def feed(self, data: bytes | bytearray | memoryview) -> ProxyHeader | None:
        """Add received bytes; the header once it is complete, else None.

        Raises:
            ProxyProtocolError: the bytes are not a well-formed header.
            RuntimeError: called again after the header was returned.
        """
        if self.header is not None:
            raise RuntimeError("the PROXY header was already read")
        buffer = self._buffer
        buffer += data
        parsed = parse_header(buffer)
        if parsed is None:
            return None
        self.header, length = parsed
        self.rest = bytes(buffer[length:])
        self._buffer = bytearray()
        return self.header


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    # 2.1: "PROXY" SP family [SP src SP dst SP sport SP dport] CRLF, at most 107 bytes in all.
    end = data.find(b"\r\n")
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"v1 header without CRLF in its first {V1_MAX_LENGTH} bytes")
        if b"\n" in data or b"\r" in data[:-1]:
            raise ProxyProtocolError("v1 header with a bare CR or LF")
        return None
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("v1 header with non-ASCII bytes") from None
    parts = line.split(" ")
    family = parts[1] if len(parts) > 1 else ""
    if family == "UNKNOWN":
        # "the receiver must ignore anything presented before the CRLF" and use the real peer.
        return ProxyHeader(1, None, None), end + 2
    if family not in _V1_FAMILIES:
        raise ProxyProtocolError(f"v1 header with unknown protocol family {family[:10]!r}")
    if len(parts) != 6:
        raise ProxyProtocolError(f"v1 {family} header needs 4 address fields, got {len(parts) - 2}")
    version = _V1_FAMILIES[family]
    source = (_v1_address(parts[2], version), _v1_port(parts[4]))
    destination = (_v1_address(parts[3], version), _v1_port(parts[5]))
    return ProxyHeader(1, source, destination), end + 2


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"v1 header with a bad IP address {text[:40]!r}") from None
    if address.version != version:
        raise ProxyProtocolError(f"v1 header: {text!r} is not an IPv{version} address")
    return str(address)


def _v1_port(text: str) -> int:
    # ASCII digits only (str.isdigit would take other scripts' digits), 0..65535.
    if not 0 < len(text) <= 5 or text.strip("0123456789") or int(text) > 65535:
        raise ProxyProtocolError(f"v1 header with a bad port {text[:10]!r}")
    return int(text)


def _parse_v2(view: memoryview) -> tuple[ProxyHeader, int] | None:
    n = len(view)
    if n >= 13:
        version, command = view[12] >> 4, view[12] & 0x0F
        if version != 2:
            raise ProxyProtocolError(f"v2 header with version {version}")
        if command > 1:  # 0x0 LOCAL, 0x1 PROXY
            raise ProxyProtocolError(f"v2 header with unknown command {command:#x}")
    if n >= 14:
        family, transport = view[13] >> 4, view[13] & 0x0F
        if family not in _V2_ADDRESS_LENGTH or transport > 2:  # UNSPEC, STREAM, DGRAM
            raise ProxyProtocolError(f"v2 header with unknown address family {view[13]:#04x}")
    if n < V2_FIXED:
        return None
    length = int.from_bytes(view[14:16], "big")
    total = V2_FIXED + length
    if n < total:
        return None
    body = view[V2_FIXED:total]
    needed = _V2_ADDRESS_LENGTH[family]
    if length < needed:
        raise ProxyProtocolError(f"v2 header too short for its addresses ({length} < {needed})")
    tlvs = _v2_tlvs(body[needed:])
    if command == 0:
        # 2.2: LOCAL "must ignore the address information" and keep the real connection's.
        return ProxyHeader(2, None, None, local=True, tlvs=tlvs), total
    source = destination = None
    if family in (0x1, 0x2):
        size = 4 if family == 0x1 else 16
        src = ipaddress.ip_address(bytes(body[:size]))
        dst = ipaddress.ip_address(bytes(body[size : 2 * size]))
        ports = body[2 * size : 2 * size + 4]
        source = (str(src), int.from_bytes(ports[:2], "big"))
        destination = (str(dst), int.from_bytes(ports[2:], "big"))
    return ProxyHeader(2, source, destination, tlvs=tlvs), total


def _v2_tlvs(data: memoryview) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    i = 0
    while i < len(data):
        if len(data) - i < 3:
            raise ProxyProtocolError("v2 header with a truncated TLV")
        kind, size = data[i], int.from_bytes(data[i + 1 : i + 3], "big")
        if len(data) - i - 3 < size:
            raise ProxyProtocolError(f"v2 TLV {kind:#04x} runs past the header ({size} bytes)")
        tlvs.append((kind, bytes(data[i + 3 : i + 3 + size])))
        i += 3 + size
    return tuple(tlvs)
