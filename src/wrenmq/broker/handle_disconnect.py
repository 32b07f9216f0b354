"""DISCONNECT from the client: will or not, session expiry update, close [MQTT-3.14.4]."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wrenmq.codec.packets import Disconnect
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import RemoteProtocolError

if TYPE_CHECKING:
    from wrenmq.broker.connection import Connection

__all__ = ["handle_disconnect"]


def handle_disconnect(conn: Connection, p: Disconnect) -> None:
    """A client DISCONNECT: discard the will unless reason 0x04, then close."""
    session = conn.session
    expiry = p.properties.session_expiry_interval
    if session is not None and expiry is not None:
        if session.expiry_interval == 0 and expiry != 0:
            # [MQTT-3.14.2-2]: a session that was to end cannot be made persistent now.
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, "session expiry set in DISCONNECT after CONNECT had 0"
            )
        session.expiry_interval = min(expiry, conn.broker.config.session_expiry_max)
    # [MQTT-3.14.4-3]: a normal DISCONNECT discards the will; 0x04 asks for it to be sent.
    conn.will_pending = p.reason_code == ReasonCode.DISCONNECT_WITH_WILL_MESSAGE
    conn.close_now()
