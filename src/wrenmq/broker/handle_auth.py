"""AUTH: the client's side of an MQTT 5 enhanced authentication exchange (section 4.12), during
CONNECT (0x18 Continue authentication) and after it (0x19 Re-authenticate, then 0x18).

The exchange itself is run by ``handle_connect.auth_step``; here the packet is checked against
the protocol: AUTH only after a CONNECT that named an Authentication Method and only with that
method [MQTT-4.12.0-5] [MQTT-4.12.1-1], 0x18 only while an exchange waits for it, 0x19 only once
connected and with no exchange in progress. Anything else is a Protocol Error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wrenmq.broker.handle_connect import auth_step
from wrenmq.codec.packets import Auth
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import MQTTError, RemoteProtocolError

if TYPE_CHECKING:
    from wrenmq.broker.connection import Connection

__all__ = ["handle_auth"]


def handle_auth(conn: Connection, p: Auth) -> None:
    """Go on with, or start (re-authentication), an enhanced authentication exchange."""
    method = conn.auth_method
    if method is None:
        raise RemoteProtocolError(
            ReasonCode.PROTOCOL_ERROR, "AUTH without an authentication method in CONNECT"
        )
    if p.properties.authentication_method != method:
        raise RemoteProtocolError(
            ReasonCode.PROTOCOL_ERROR, "AUTH with another authentication method than CONNECT's"
        )
    data = p.properties.authentication_data
    if p.reason_code == ReasonCode.CONTINUE_AUTHENTICATION:
        exchange = conn.auth_exchange
        if exchange is None:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, "AUTH 0x18 with no authentication in progress"
            )
        step = exchange.step
        auth_step(conn, lambda: step(data))
    elif p.reason_code == ReasonCode.RE_AUTHENTICATE:
        if conn.state != 1 or conn.auth_exchange is not None:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR,
                "re-authentication before CONNACK or during another exchange",
            )
        factory = conn.broker.auth_methods.get(method)
        if factory is None:  # the method was removed since (reload)
            raise MQTTError(ReasonCode.NOT_AUTHORIZED, f"{method!r} is no longer available")
        exchange = conn.auth_exchange = factory()
        start = exchange.start
        auth_step(conn, lambda: start(conn.client_id, conn.username, data))
    else:
        raise RemoteProtocolError(
            ReasonCode.PROTOCOL_ERROR, f"a client may not send AUTH {p.reason_code:#04x}"
        )
