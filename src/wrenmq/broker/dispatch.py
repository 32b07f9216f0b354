"""Packet dispatch: packet class -> ``handle_*`` function, and the one place where an
``MQTTError`` becomes a reason code on the wire (CONNACK before the session exists, DISCONNECT in
MQTT 5 after it, a plain close in 3.x) [MQTT-4.13].
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wrenmq.broker import (
    handle_auth,
    handle_connect,
    handle_disconnect,
    handle_publish,
    handle_subscribe,
)
from wrenmq.codec.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import MQTTError, RemoteProtocolError

if TYPE_CHECKING:
    from wrenmq.broker.connection import Connection

__all__ = ["dispatch", "fail"]

log = logging.getLogger("wrenmq.broker")

_PINGRESP = b"\xd0\x00"
# CONNECT errors that are protocol violations with no 3.1.1 return code: close without a CONNACK.
_V3_CLOSE_ONLY = frozenset(
    {
        ReasonCode.MALFORMED_PACKET,
        ReasonCode.PROTOCOL_ERROR,
        ReasonCode.TOPIC_NAME_INVALID,
        ReasonCode.QOS_NOT_SUPPORTED,
        ReasonCode.RETAIN_NOT_SUPPORTED,
    }
)


def _pingreq(conn: Connection, packet: PingReq) -> None:
    conn.write(_PINGRESP)


def _server_only(conn: Connection, packet: Packet) -> None:
    raise RemoteProtocolError(
        ReasonCode.PROTOCOL_ERROR, f"{type(packet).__name__} may only be sent by a server"
    )


_HANDLERS: dict[type, Callable[[Connection, Any], None]] = {
    Connect: handle_connect.handle_connect,
    Publish: handle_publish.handle_publish,
    PubAck: handle_publish.handle_puback,
    PubRec: handle_publish.handle_pubrec,
    PubRel: handle_publish.handle_pubrel,
    PubComp: handle_publish.handle_pubcomp,
    Subscribe: handle_subscribe.handle_subscribe,
    Unsubscribe: handle_subscribe.handle_unsubscribe,
    PingReq: _pingreq,
    Disconnect: handle_disconnect.handle_disconnect,
    Auth: handle_auth.handle_auth,
    ConnAck: _server_only,
    SubAck: _server_only,
    UnsubAck: _server_only,
    PingResp: _server_only,
}


def dispatch(conn: Connection, packets: list[Packet]) -> None:
    """Handle ``packets`` in order; a protocol error stops at the offending packet."""
    handlers = _HANDLERS
    try:
        for i, packet in enumerate(packets):
            if conn.state == 2:  # closed by an earlier packet of this batch
                return
            handlers[packet.__class__](conn, packet)
            if (
                conn.waiting_on
                or conn.throttle_handle is not None
                or conn.congested
                or conn.pending is not None
            ):
                # Back-pressure (a subscriber's queue is long), the client's rate limit, its
                # unread output or an awaited answer: the rest waits until all of them let go.
                conn.backlog = packets[i + 1 :]
                return
    except MQTTError as exc:
        fail(conn, exc)
    except Exception:
        # A bug must cost one connection, never the broker.
        log.exception("internal error handling a packet from %r (%s)", conn.client_id, conn.peer)
        fail(conn, MQTTError(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, "internal error"))


def fail(conn: Connection, exc: MQTTError) -> None:
    """Close ``conn`` for ``exc``, telling the client why where the protocol allows it."""
    conn.broker.stats.protocol_errors += 1
    log.warning("closing %r (%s): %s", conn.client_id or "<no client id>", conn.peer, exc)
    if conn.state == 0:  # still in CONNECT: the answer is a CONNACK [MQTT-3.2.2-7]
        level = getattr(exc, "protocol_level", None)
        if level is None:
            level = conn.decoder.version
        if level is None:
            conn.close_now()  # not MQTT at all: nothing sensible to answer [MQTT-3.1.2-1]
            return
        conn.version = level
        if level < 5 and exc.reason_code in _V3_CLOSE_ONLY:
            # 3.1.1 has no CONNACK return code for a broken CONNECT: just close [MQTT-3.1.2-3],
            # 4.8; "0x03 Server unavailable" would send the client into a retry loop.
            conn.close_now()
            return
        conn.refuse(exc.reason_code, exc.message)
        return
    conn.disconnect(exc.reason_code, exc.message)
