"""CONNECT: version, client id, keep alive, authentication, session takeover/resume, CONNACK.

Authentication takes one of three paths:

* the password file and listener rules, checked at once (the default, and the fast one);
* pluggable authenticators (``Broker(authenticators=...)`` / ``auth_plugins``), awaited with
  ``Connection.suspend`` after the password file, within ``auth_timeout``;
* MQTT 5 enhanced authentication (CONNECT with an Authentication Method): an exchange of AUTH
  packets driven by an ``AuthMethod`` (``broker.auth.enhanced``) until it succeeds or fails;
  ``auth_step`` runs each step, for CONNECT and for re-authentication (``handle_auth``).

Whatever the path, ``accept`` finishes the CONNECT once the client is authenticated.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from wrenmq.broker.auth.enhanced import AuthOutcome, Continue, Failure, Success
from wrenmq.broker.hooks import HookEvent, Verdict
from wrenmq.broker.sessions import SESSION_NEVER_EXPIRES
from wrenmq.codec.packets import Auth, ConnAck, Connect
from wrenmq.codec.properties import NO_PROPERTIES, Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import MQTTError, RemoteProtocolError
from wrenmq.transport.tls import peer_common_name

if TYPE_CHECKING:
    from wrenmq.broker.connection import Connection

__all__ = ["accept", "auth_step", "handle_connect", "within"]

log = logging.getLogger("wrenmq.broker")

_T = TypeVar("_T")

MAX_PACKET = 268_435_460


def authenticate(conn: Connection, p: Connect) -> None:
    """Check the user name and password against the listener's rules and the password file."""
    broker = conn.broker
    listener = conn.listener
    if listener is not None and listener.use_identity_as_username:
        # As mosquitto: the verified certificate's CN is the user name; no password is checked.
        identity = peer_common_name(conn.transport)
        if identity is None:
            raise MQTTError(ReasonCode.NOT_AUTHORIZED, "no client certificate common name")
        conn.username = identity
        return
    if p.username is None:
        if not _allow_anonymous(conn):
            raise MQTTError(ReasonCode.NOT_AUTHORIZED, "anonymous clients are not allowed")
        return
    passwords = broker.passwords
    if passwords is not None and (
        p.password is None or not passwords.verify(p.username, p.password)
    ):
        raise MQTTError(ReasonCode.BAD_USER_NAME_OR_PASSWORD, "bad user name or password")
    conn.username = p.username


def _allow_anonymous(conn: Connection) -> bool:
    listener = conn.listener
    if listener is not None and listener.allow_anonymous is not None:
        return listener.allow_anonymous
    return conn.broker.config.allow_anonymous


async def within(answer: Awaitable[_T], timeout: float, otherwise: _T, what: str) -> _T:
    """A pluggable check's answer; ``otherwise`` (a refusal) when it takes longer than
    ``timeout`` or fails: pluggable code fails closed.
    """
    try:
        async with asyncio.timeout(timeout):  # no extra task, unlike wait_for on 3.11
            return await answer
    except TimeoutError:
        log.warning("%s took longer than %gs: refused", what, timeout)
    except Exception:
        log.exception("%s failed: refused", what)
    return otherwise


def _authenticated(conn: Connection, p: Connect, verdict: Verdict) -> None:
    """The pluggable authenticators have judged ``p``."""
    if verdict is not Verdict.ALLOW:
        if p.username is None:
            raise MQTTError(ReasonCode.NOT_AUTHORIZED, "anonymous clients are not allowed")
        raise MQTTError(ReasonCode.BAD_USER_NAME_OR_PASSWORD, "bad user name or password")
    conn.username = p.username
    accept(conn, p)


def _begin_enhanced(conn: Connection, p: Connect, method: str) -> None:
    """Start the exchange of ``method`` with CONNECT's Authentication Data."""
    factory = conn.broker.auth_methods.get(method)
    if factory is None:
        raise MQTTError(
            ReasonCode.BAD_AUTHENTICATION_METHOD,
            f"authentication method {method!r} is not supported",
        )
    conn.auth_method = method
    conn.connect_packet = p
    exchange = conn.auth_exchange = factory()
    data = p.properties.authentication_data
    auth_step(conn, lambda: exchange.start(conn.client_id, p.username, data))


def auth_step(conn: Connection, call: Callable[[], AuthOutcome | Awaitable[AuthOutcome]]) -> None:
    """Run one step of the enhanced authentication exchange and act on its outcome: at once, or
    (a coroutine) once it is in, reading held meanwhile.
    """
    try:
        result = call()
    except Exception:
        log.exception("authentication method %r failed", conn.auth_method)
        result = Failure()
    if inspect.isawaitable(result):
        timeout = conn.broker.config.connect_timeout
        what = f"authentication method {conn.auth_method!r}"
        conn.suspend(
            within(result, timeout, Failure(), what), lambda outcome: _settle(conn, outcome)
        )
    else:
        _settle(conn, result)


def _settle(conn: Connection, outcome: AuthOutcome) -> None:
    """Answer a step: AUTH 0x18 to go on; CONNACK / AUTH 0x00 on success; refuse on failure."""
    method = conn.auth_method
    if isinstance(outcome, Continue):
        props = Properties(authentication_method=method, authentication_data=outcome.data)
        conn.send(Auth(ReasonCode.CONTINUE_AUTHENTICATION, props))
        return
    conn.auth_exchange = None
    if isinstance(outcome, Success):
        if conn.state == 1:  # re-authentication [MQTT-4.12.1-1]
            if outcome.username != conn.username:
                raise MQTTError(ReasonCode.NOT_AUTHORIZED, "re-authenticated as a different user")
            props = Properties(authentication_method=method, authentication_data=outcome.data)
            conn.send(Auth(ReasonCode.SUCCESS, props))
            return
        p, conn.connect_packet = conn.connect_packet, None
        if p is None or conn.state != 0:
            raise MQTTError(ReasonCode.PROTOCOL_ERROR, "authentication ended out of turn")
        conn.username = outcome.username
        accept(conn, p, outcome.data)
        return
    if isinstance(outcome, Failure):
        raise MQTTError(outcome.reason_code, outcome.reason)
    log.error("authentication method %r answered %r; refusing", method, outcome)
    raise MQTTError(ReasonCode.NOT_AUTHORIZED, "authentication failed")


def handle_connect(conn: Connection, p: Connect) -> None:
    """Accept or refuse a CONNECT; on success the connection is bound to its session."""
    if conn.state != 0 or conn.connect_packet is not None:
        raise RemoteProtocolError(ReasonCode.PROTOCOL_ERROR, "second CONNECT")  # [MQTT-3.1.0-2]
    broker = conn.broker
    cfg = broker.config
    version = conn.version = p.protocol_level
    props = p.properties
    if version == 5:
        if props.request_problem_information == 0:
            conn.problem_info = False
        if props.maximum_packet_size:
            conn.max_packet_size = props.maximum_packet_size

    client_id = p.client_id
    if not client_id:
        # [MQTT-3.1.3-6]: the server assigns an id (3.1.1 checked clean session in the codec).
        client_id = f"wrenmq-{uuid.uuid4().hex[:16]}"
    conn.client_id = client_id

    if 0 <= cfg.max_connections <= broker.connected_count:
        raise MQTTError(ReasonCode.QUOTA_EXCEEDED, "too many connections")
    if version == 5 and props.authentication_method is not None:
        _begin_enhanced(conn, p, props.authentication_method)
        return
    chain = broker.authenticator
    if chain is None or (conn.listener is not None and conn.listener.use_identity_as_username):
        authenticate(conn, p)
        accept(conn, p)
        return
    # Pluggable authenticators: the password file first in the chain, then the plugins.
    answer = chain.authenticate(
        client_id, p.username, p.password, conn.peer, allow_anonymous=_allow_anonymous(conn)
    )
    conn.suspend(
        within(answer, cfg.auth_timeout, Verdict.DENY, f"authenticating {client_id!r}"),
        lambda verdict: _authenticated(conn, p, verdict),
    )


def accept(conn: Connection, p: Connect, auth_data: bytes | None = None) -> None:
    """Finish a CONNECT whose client is authenticated: session, CONNACK."""
    broker = conn.broker
    cfg = broker.config
    version = conn.version
    props = p.properties
    client_id = conn.client_id
    assigned = client_id if not p.client_id else None
    if 0 <= cfg.max_connections <= broker.connected_count:
        raise MQTTError(ReasonCode.QUOTA_EXCEEDED, "too many connections")
    verdict = broker.hooks.intercept(HookEvent.CLIENT_CONNECTING, conn, p)
    if verdict is not None:
        raise MQTTError(verdict, "refused by the client_connecting interceptor")
    will = p.will
    if will is not None:
        # [MQTT-3.2.2-12], [MQTT-3.2.2-13]: a will the server could not publish is refused.
        if will.qos > cfg.max_qos:
            raise MQTTError(ReasonCode.QOS_NOT_SUPPORTED, f"will QoS {will.qos} is not supported")
        if will.retain and not cfg.retain_available:
            raise MQTTError(ReasonCode.RETAIN_NOT_SUPPORTED, "will retain is not supported")
        if cfg.max_topic_levels and will.topic.count("/") >= cfg.max_topic_levels:
            raise MQTTError(ReasonCode.TOPIC_NAME_INVALID, "will topic has too many levels")

    keepalive = p.keepalive
    server_keepalive = None
    if cfg.max_keepalive and (
        keepalive > cfg.max_keepalive
        or (keepalive == 0 and version == 5 and cfg.max_keepalive < 65535)
    ):
        keepalive = cfg.max_keepalive
        if version == 5:
            server_keepalive = keepalive  # [MQTT-3.2.2-21]
        else:
            log.info("%r asked for keep alive %d; using %d", client_id, p.keepalive, keepalive)
    conn.keepalive = keepalive

    if version == 5:
        expiry = props.session_expiry_interval or 0
        capped = min(expiry, cfg.session_expiry_max)
    else:
        expiry = capped = 0 if p.clean_start else SESSION_NEVER_EXPIRES
    session, present = broker.open_session(conn, client_id, p.clean_start, version)
    session.expiry_interval = capped
    if version < 5 and not p.clean_start and cfg.persistent_client_expiration:
        session.expiry_interval = cfg.persistent_client_expiration
    session.will = p.will
    session.username = conn.username
    broker.session_connected(session)
    session.inflight_max = cfg.max_inflight_messages
    if version == 5 and props.receive_maximum:
        session.inflight_max = min(props.receive_maximum, cfg.max_inflight_messages)
    session.max_packet_size = conn.max_packet_size
    conn.topic_alias_max = cfg.max_topic_alias if version == 5 else 0
    conn.receive_maximum = cfg.max_inflight_messages
    conn.state = 1

    ack_props = NO_PROPERTIES
    if version == 5:
        fields: dict[str, object] = {
            "receive_maximum": conn.receive_maximum,
            "topic_alias_maximum": conn.topic_alias_max or None,
        }
        if assigned is not None:
            fields["assigned_client_identifier"] = assigned
        if server_keepalive is not None:
            fields["server_keep_alive"] = server_keepalive
        if capped != expiry:
            fields["session_expiry_interval"] = capped
        if cfg.max_qos < 2:
            fields["maximum_qos"] = cfg.max_qos
        if not cfg.retain_available:
            fields["retain_available"] = 0
        if cfg.max_packet_size < MAX_PACKET:
            fields["maximum_packet_size"] = cfg.max_packet_size
        if not cfg.wildcard_subscription_available:
            fields["wildcard_subscription_available"] = 0
        if not cfg.subscription_identifier_available:
            fields["subscription_identifier_available"] = 0
        if not cfg.shared_subscription_available:
            fields["shared_subscription_available"] = 0
        if props.request_response_information:
            fields["response_information"] = f"wrenmq/response/{client_id}"
        if conn.auth_method is not None:  # [MQTT-3.2.2-?]: the method of the exchange
            fields["authentication_method"] = conn.auth_method
            if auth_data is not None:
                fields["authentication_data"] = auth_data
        ack_props = Properties(**fields)  # type: ignore[arg-type]
    conn.send(ConnAck(present, ReasonCode.SUCCESS, ack_props))
    if present:
        session.resend_inflight()
        session.pump()
    broker.client_connected(conn, present)
