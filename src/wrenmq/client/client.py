"""The asyncio MQTT client: ``async with Client(...) as client``.

The protocol work is done by the sans-IO ``wrenmq.protocol.client.ClientProtocol``; this module
only moves bytes, keeps futures keyed by packet id, runs the keep alive timer, and carries the
client's policies: reconnect with backoff, resubscribe when the server lost the session, the
bounded offline queue, message streams and callbacks. One ``asyncio.Protocol`` reads; there is no
task per message (async callbacks run one after another on a single dispatcher task).

Ordering after a reconnect: SUBSCRIBE for every remembered subscription (only when the server lost
the session), then the resends of unacknowledged QoS 1/2 messages, then the offline queue, then
new publishes.

Durable sessions (``session_store=``): each ``connect()`` loads the client id's session from the
store (or clears it, for a clean start) and the sans-IO protocol runs in durable mode: a QoS 1/2
PUBLISH, a PUBREL, and the PUBREC / PUBCOMP of an incoming QoS 2 message go out only once the
store has what they imply (``durable.py``). A new incoming QoS 2
message reaches the application only once its packet id is stored, one message at a time, and
the messages received after it wait behind it, so delivery order holds. The
application therefore never sees a QoS 2 message twice, across restarts too; a process that dies
in the instant between storing an id and handing its message over loses that one message. With
``manual_ack`` the id is stored when the application acknowledges instead: nothing is lost, and
a process dying between processing and that store sees the message again. A store failure ends
the client.

Transports: TCP (``tls=`` for TLS) through ``loop.create_connection``, or WebSocket
(``transport="websockets"``; ``tls=`` for wss) through ``wrenmq.transport.ws_client``; both drive
the same ``Connection`` protocol.

Why past ~600 lines: the class is the client's public surface, every verb with its keyword
arguments documented in spec terms; the mechanisms live elsewhere (``router.py`` streams and
handlers, ``offline.py`` the offline queue, ``connection.py`` the socket, ``backoff.py`` the
reconnect policy, ``durable.py`` (with ``journal.py`` and ``store.py``) the durable session,
``auth.py`` enhanced authentication, and the protocol itself in ``wrenmq.protocol``).

Imports ``asyncio``, ``ssl``, ``transport``, ``protocol``, ``codec`` and ``errors``; never the
broker.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, cast, overload

from wrenmq.client.auth import Authenticator, AuthExchange
from wrenmq.client.backoff import Reconnect
from wrenmq.client.connection import Connection
from wrenmq.client.durable import DurableSession
from wrenmq.client.errors import DisconnectedError, StoreError
from wrenmq.client.message import Message, Messages
from wrenmq.client.offline import OfflinePolicy, OfflineQueue, Queued, fail_future
from wrenmq.client.router import MessageHandler, MessageRouter
from wrenmq.client.store import SessionStore
from wrenmq.codec.packets import ConnAck, Subscription, Will
from wrenmq.codec.properties import NO_PROPERTIES, Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.types import QoS
from wrenmq.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    LocalProtocolError,
    MQTTError,
    NegativeAckError,
    RemoteProtocolError,
)
from wrenmq.protocol.client import ClientProtocol, ConnectionState
from wrenmq.protocol.events import (
    AuthReceived,
    Connected,
    ConnectionRefused,
    Disconnected,
    MessageReceived,
    PongReceived,
    PublishAcked,
    PubRecReceived,
    PubRelReceived,
    SubscribeAcked,
    UnsubscribeAcked,
)

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "Client",
    "MessageHandler",
    "OfflinePolicy",
    "PayloadType",
    "SubscribeTarget",
    "TransportName",
]

log = logging.getLogger("wrenmq.client")

PayloadType = bytes | bytearray | memoryview | str | int | float | None
SubscribeItem = str | tuple[str, int] | Subscription
SubscribeList = list[SubscribeItem] | tuple[SubscribeItem, ...]
SubscribeTarget = str | Subscription | SubscribeList
TransportName = Literal["tcp", "websockets"]
_QoS0 = Literal[0, QoS.AT_MOST_ONCE]
_QoS12 = Literal[1, 2, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE]

_NEW, _CONNECTING, _CONNECTED, _RECONNECTING, _CLOSED = range(5)
_MAX_QUEUED_DEFAULT: Final = 10_000


def _payload(payload: PayloadType) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    if isinstance(payload, int | float):
        return str(payload).encode()
    return bytes(payload)


class Client:
    """An asyncio MQTT 3.1 / 3.1.1 / 5.0 client.

    Args:
        hostname: the server's host name or address.
        port: the server's TCP port (1883 plain, usually 8883 with TLS).
        client_id: the Client Identifier [MQTT-3.1.3-3]. ``None`` makes a random one (so that a
            session can be resumed after a reconnect); ``""`` asks an MQTT 5 server to assign one
            (Assigned Client Identifier).
        version: protocol level: 5 (MQTT 5.0), 4 (3.1.1) or 3 (3.1).
        clean_start: Clean Start (MQTT 5) / Clean Session (3.x) of the first CONNECT: discard any
            session the server holds for this client id. Reconnects ask to resume the session.
        session_expiry: MQTT 5 Session Expiry Interval in seconds: how long the server keeps the
            session after the connection ends (0: not at all; 0xFFFFFFFF: forever). In 3.x the
            session outlives the connection exactly when ``clean_start`` is False.
        keepalive: Keep Alive in seconds: the longest silence before the client sends PINGREQ;
            0 disables it. A Server Keep Alive from the server replaces it.
        username: User Name for authentication.
        password: Password for authentication (``str`` is encoded as UTF-8).
        will: the Will Message the server publishes if this client disappears without
            DISCONNECT.
        tls: ``True`` for TLS with the default context, or an ``ssl.SSLContext`` (with
            ``transport="websockets"``: wss).
        transport: ``"tcp"`` (MQTT over TCP, or TLS) or ``"websockets"`` (MQTT over WebSocket,
            subprotocol ``mqtt``; ``port`` is then the server's WebSocket port).
        ws_path: the HTTP path of the server's WebSocket endpoint.
        ws_headers: extra HTTP headers for the WebSocket opening handshake.
        max_inflight: most outgoing QoS 1/2 messages unacknowledged at once; the server's
            Receive Maximum lowers it; further publishes wait their turn.
        receive_maximum: MQTT 5 Receive Maximum: most incoming QoS 1/2 messages unacknowledged at
            once (matters with ``manual_ack``).
        max_packet_size: MQTT 5 Maximum Packet Size this client accepts.
        topic_alias_maximum: MQTT 5 Topic Alias Maximum this client accepts from the server.
            Outgoing topic aliases are automatic within the server's maximum.
        reconnect: a ``Reconnect`` policy to reconnect after losing an established connection,
            or ``None`` to end the client instead.
        manual_ack: acknowledge incoming QoS 1/2 messages only through ``Message.ack()`` (or
            when every ``on_message`` handler returned without raising).
        offline_queue_size: most publishes kept while reconnecting.
        offline_policy: what a publish does when the offline queue is full: ``"block"`` until
            there is room, ``"raise"`` ``OfflineQueueFull``, or ``"drop_oldest"`` (the dropped
            publish raises ``OfflineQueueFull``).
        max_queued_messages: received messages buffered in streams before reading from the
            network pauses (back-pressure).
        connect_timeout: seconds to wait for the TCP connection and the CONNACK.
        request_response_information: MQTT 5: ask the server for Response Information.
        user_properties: MQTT 5 User Properties sent in CONNECT.
        properties: further MQTT 5 CONNECT properties.
        session_store: keep the session in this store (``wrenmq.client.store.SQLiteStore``,
            ``MemorySessionStore``) so that QoS 1/2 messages in flight or queued, and the packet
            ids of incoming QoS 2 messages, survive a restart of the process: QoS 2 stays exactly
            once across reconnects and restarts. Needs an explicit ``client_id``. Each
            ``connect()`` resumes what the store holds for the client id, unless this is the
            first connection with ``clean_start=True``, which clears it. With a store, a QoS 1/2
            publish is never withdrawn once made: a timeout, a cancellation or the client closing
            leaves it in the store, to be sent on the next ``connect()``. ``disconnect()``
            closes the store.
        auth_method: MQTT 5 Authentication Method for enhanced authentication (e.g.
            ``"SCRAM-SHA-256"``); needs ``authenticator``.
        authenticator: produces the Authentication Data of each exchange (``initial()``,
            ``challenge(data)``, optionally ``complete(data)``; see ``wrenmq.client.auth``), e.g.
            ``wrenmq.client.scram.ScramSha256Authenticator``.
    """

    def __init__(
        self,
        hostname: str,
        port: int = 1883,
        *,
        client_id: str | None = None,
        version: int = 5,
        clean_start: bool = True,
        session_expiry: int = 0,
        keepalive: int = 60,
        username: str | None = None,
        password: str | bytes | None = None,
        will: Will | None = None,
        tls: bool | ssl.SSLContext | None = None,
        transport: TransportName = "tcp",
        ws_path: str = "/mqtt",
        ws_headers: Mapping[str, str] | None = None,
        max_inflight: int = 100,
        receive_maximum: int = 65535,
        max_packet_size: int | None = None,
        topic_alias_maximum: int = 0,
        reconnect: Reconnect | None = None,
        manual_ack: bool = False,
        offline_queue_size: int = 1000,
        offline_policy: OfflinePolicy = "block",
        max_queued_messages: int = _MAX_QUEUED_DEFAULT,
        connect_timeout: float = 10.0,
        request_response_information: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
        properties: Properties = NO_PROPERTIES,
        session_store: SessionStore | None = None,
        auth_method: str | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        if transport not in ("tcp", "websockets"):
            raise ConfigError(
                "transport", f"unknown transport {transport!r}: 'tcp' or 'websockets'"
            )
        if session_store is not None and not client_id:
            raise ConfigError("client_id", "a session store needs an explicit client id")
        if (auth_method is None) != (authenticator is None):
            raise ConfigError("auth_method", "auth_method and authenticator go together")
        if auth_method is not None:
            if version != 5:
                raise ConfigError("auth_method", "enhanced authentication needs MQTT 5")
            properties = properties.replace(authentication_method=auth_method)
        if offline_policy not in ("block", "raise", "drop_oldest"):
            raise ConfigError("offline_policy", f"unknown policy {offline_policy!r}")
        if offline_queue_size < 1:
            raise ConfigError("offline_queue_size", "must be at least 1")
        if client_id is None:
            client_id = f"wrenmq-{uuid.uuid4().hex[:16]}"
        if user_properties:
            properties = properties.replace(user_properties=tuple(user_properties))
        self.hostname = hostname
        self.port = port
        self._tls: ssl.SSLContext | None = (
            ssl.create_default_context() if tls is True else (tls or None)
        )
        self._transport: TransportName = transport
        self._ws_path = ws_path
        self._ws_headers = dict(ws_headers) if ws_headers else None
        self._proto = ClientProtocol(
            version=version,
            client_id=client_id,
            clean_start=clean_start,
            keepalive=keepalive,
            username=username,
            password=password.encode() if isinstance(password, str) else password,
            will=will,
            session_expiry=session_expiry,
            receive_maximum=receive_maximum,
            maximum_packet_size=max_packet_size,
            topic_alias_maximum=topic_alias_maximum,
            max_inflight=max_inflight,
            manual_ack=manual_ack,
            request_response_information=request_response_information,
            connect_properties=properties,
            durable=session_store is not None,
        )
        self._reconnect = reconnect
        self._manual_ack = manual_ack
        self._connect_timeout = connect_timeout

        self._state = _NEW
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connack_waiter: asyncio.Future[Connected] | None = None
        self._disconnect_error: MQTTError | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._connected_event = asyncio.Event()
        self.connack: ConnAck | None = None

        self._pub_futures: dict[int, asyncio.Future[PublishAcked]] = {}
        self._req_futures: dict[int, asyncio.Future[tuple[ReasonCode, ...]]] = {}
        self._offline = OfflineQueue(offline_queue_size, offline_policy, self._dropped)
        self._subscriptions: dict[str, tuple[Subscription, Properties]] = {}
        self._router = MessageRouter(max_queued_messages, self._pause_reading)
        self._connected_handlers: list[Callable[[ConnAck], Any]] = []
        self._disconnected_handlers: list[Callable[[DisconnectedError], Any]] = []

        self._responses: dict[bytes, asyncio.Future[Message]] = {}
        self._response_topic: str | None = None
        self._response_lock = asyncio.Lock()
        self._idle_waiters: list[asyncio.Future[None]] = []

        self._durable = (
            None
            if session_store is None
            else DurableSession(
                session_store,
                self._proto,
                self._offline,
                self._write,
                self._deliver,
                self._store_failed,
            )
        )
        self._auth = (
            None
            if authenticator is None
            else AuthExchange(authenticator, self._proto, self._write, self._auth_failed)
        )

    def __repr__(self) -> str:
        state = ("new", "connecting", "connected", "reconnecting", "closed")[self._state]
        return f"<Client {self.client_id!r} {self.hostname}:{self.port} {state}>"

    # -- properties -----------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        """The client identifier (the server-assigned one once connected, if any)."""
        return self._proto.client_id

    @property
    def version(self) -> int:
        """The protocol level: 3, 4 or 5."""
        return self._proto.version

    @property
    def is_connected(self) -> bool:
        """Whether the client has a live, accepted connection."""
        return self._state == _CONNECTED

    @property
    def protocol(self) -> ClientProtocol:
        """The sans-IO protocol state machine (for introspection: limits the server set)."""
        return self._proto

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the client is connected (e.g. after a reconnect)."""
        async with asyncio.timeout(timeout):
            while self._state != _CONNECTED:
                if self._state in (_NEW, _CLOSED):
                    raise self._closed_error()
                await self._connected_event.wait()

    # -- callbacks ------------------------------------------------------------------------------

    @property
    def messages(self) -> Messages:
        """Every received message not claimed by a filtered stream: ``async for m in ...``.

        ``client.messages.filter("a/+")`` makes a stream of the matching messages only.
        """
        return self._router.messages

    def on_message(self, handler: MessageHandler) -> MessageHandler:
        """Call ``handler(message)`` for every message (usable as a decorator).

        A coroutine function is awaited on the client's dispatcher task, one message at a time.
        An exception is logged and never stops the client; in manual-ack mode a message is
        acknowledged once every handler returned without raising.
        """
        self._router.handlers.append(handler)
        return handler

    def on_connected(self, handler: Callable[[ConnAck], Any]) -> Callable[[ConnAck], Any]:
        """Call ``handler(connack)`` after each successful (re)connection."""
        self._connected_handlers.append(handler)
        return handler

    def on_disconnected(
        self, handler: Callable[[DisconnectedError], Any]
    ) -> Callable[[DisconnectedError], Any]:
        """Call ``handler(error)`` whenever an established connection ends, with the reason."""
        self._disconnected_handlers.append(handler)
        return handler

    # -- connecting -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def connect(self) -> ConnAck:
        """Connect to the server; return its CONNACK.

        Raises:
            ConnectError: the server refused (its reason code) or could not be reached.
            AuthError: enhanced authentication failed on this side (e.g. the server could not
                prove it knows the password).
            StoreError: the session store cannot be opened or read.
        """
        if self._state not in (_NEW, _CLOSED):
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "already connected")
        self._loop = asyncio.get_running_loop()
        first = self._state == _NEW
        self._state = _CONNECTING
        self._router.reopen()
        try:
            if self._durable is not None:
                await self._durable.open(clean=first and self._proto.clean_start)
            await self._connect_once()
        except BaseException as exc:
            self._state = _CLOSED
            self._fail_all(
                exc if isinstance(exc, MQTTError) else DisconnectedError(message=str(exc))
            )
            if self._durable is not None:
                await self._durable.close()
            raise
        assert self.connack is not None
        return self.connack

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Connected] = loop.create_future()
        self._connack_waiter = waiter
        self._disconnect_error = None
        conn: Connection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                auth_data = None
                if self._auth is not None:
                    auth_data = await self._auth.initial_data()
                conn = await self._open_connection(loop)
                self._conn = conn
                conn.write(self._proto.connect(authentication_data=auth_data))
                await waiter
        except (OSError, TimeoutError) as exc:
            self._abandon(conn)
            raise ConnectError(
                ReasonCode.SERVER_UNAVAILABLE,
                f"cannot connect to {self.hostname}:{self.port}: {str(exc) or 'timed out'}",
            ) from exc
        except BaseException:
            self._abandon(conn)
            raise
        finally:
            self._connack_waiter = None

    async def _open_connection(self, loop: asyncio.AbstractEventLoop) -> Connection:
        if self._transport == "websockets":
            # Imported here: the websockets library is needed only by WebSocket clients.
            from wrenmq.transport.ws_client import connect_websocket

            _, protocol = await connect_websocket(
                lambda: Connection(self, loop),
                self.hostname,
                self.port,
                path=self._ws_path,
                ssl_context=self._tls,
                headers=self._ws_headers,
                max_size=self._proto.maximum_packet_size,
            )
            return cast(Connection, protocol)
        _, conn = await loop.create_connection(
            lambda: Connection(self, loop),
            self.hostname,
            self.port,
            ssl=self._tls,
            server_hostname=self.hostname if self._tls is not None else None,
        )
        return conn

    def _abandon(self, conn: Connection | None) -> None:
        """Drop a connection attempt that did not get as far as CONNACK."""
        if conn is not None:
            conn.abort()
        if self._conn is conn:
            self._conn = None
        if self._proto.state != ConnectionState.DISCONNECTED:
            self._fail_requests(self._proto.connection_lost(), DisconnectedError())

    def _on_connected(self, event: Connected) -> None:
        """CONNACK Success: resubscribe, resend, flush the offline queue, then tell the world."""
        conn = self._conn
        assert conn is not None
        if self._auth is not None and not self._auth.verify(
            event.connack.properties.authentication_data
        ):
            return
        self.connack = event.connack
        if self._durable is not None and not event.session_present:
            self._durable.server_lost_session()
        if not event.session_present and self._subscriptions:
            self._resubscribe(conn)
        conn.write(self._proto.data_to_send())
        self._state = _CONNECTED
        self._flush_offline(conn)
        self._schedule_keepalive()
        self._connected_event.set()
        waiter = self._connack_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(event)
        log.info(
            "connected to %s:%d as %r (session present: %s)",
            self.hostname,
            self.port,
            self.client_id,
            event.session_present,
        )
        for handler in self._connected_handlers:
            self._router.call(handler, event.connack)

    def _resubscribe(self, conn: Connection) -> None:
        for subscription, props in list(self._subscriptions.values()):
            try:
                pid, data = self._proto.subscribe([subscription], props)
            except LocalProtocolError as exc:
                log.warning("cannot resubscribe to %r: %s", subscription.topic_filter, exc)
                continue
            fut: asyncio.Future[tuple[ReasonCode, ...]] = asyncio.get_running_loop().create_future()
            fut.add_done_callback(self._resubscribed(subscription.topic_filter))
            self._req_futures[pid] = fut
            conn.write(data)

    def _resubscribed(self, topic_filter: str) -> Callable[[asyncio.Future[Any]], None]:
        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is None and not any(c.is_failure for c in fut.result()):
                log.debug("resubscribed to %r", topic_filter)
            elif not isinstance(exc, DisconnectedError):
                log.warning("resubscribing to %r failed: %s", topic_filter, exc or fut.result())

        return done

    # -- the connection's callbacks ---------------------------------------------------------------

    def data_received(self, conn: Connection, data: bytes) -> None:
        """Feed the protocol and act on its events (``Connection`` callback)."""
        if conn is not self._conn:
            return
        proto = self._proto
        for event in proto.receive_data(data):
            _EVENT_HANDLERS[type(event)](self, event)
        conn.write(proto.data_to_send())

    def data_sent(self, conn: Connection) -> None:
        """Bytes were written: the keep alive counts from now (``Connection`` callback)."""
        loop = self._loop
        if loop is not None:
            self._proto.note_sent(loop.time())

    def connection_lost(self, conn: Connection, exc: Exception | None) -> None:
        """The transport closed: keep the session, then reconnect or end (``Connection``)."""
        if conn is not self._conn:
            return
        self._conn = None
        self._cancel_timer()
        self._connected_event.clear()
        self._router.connection_lost()
        error = self._disconnect_error or DisconnectedError(
            ReasonCode.UNSPECIFIED_ERROR, f"connection lost: {exc}" if exc else "connection lost"
        )
        if not isinstance(error, DisconnectedError):
            error = DisconnectedError(error.reason_code, error.message)
        self._fail_requests(self._proto.connection_lost(), error)
        if self._auth is not None:
            self._auth.abandon(error)
        waiter = self._connack_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                ConnectError(error.reason_code, f"connection closed before CONNACK: {error}")
            )
            waiter.exception()
            return
        if self._state != _CONNECTED:
            return
        log.info("disconnected from %s:%d: %s", self.hostname, self.port, error)
        if self._reconnect is not None:
            self._state = _RECONNECTING
            self._reconnect_task = asyncio.get_running_loop().create_task(
                self._reconnect_loop(), name="wrenmq-reconnect"
            )
        else:
            self._state = _CLOSED
            self._fail_all(error)
        for handler in self._disconnected_handlers:
            self._router.call(handler, error)

    async def _reconnect_loop(self) -> None:
        assert self._reconnect is not None
        attempt = 0
        for delay in self._reconnect.delays():
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._connect_once()
            except (ConnectError, DisconnectedError, RemoteProtocolError, AuthError) as exc:
                log.info("reconnect attempt %d failed: %s", attempt, exc)
                continue
            return
        log.warning("giving up reconnecting after %d attempts", attempt)
        self._state = _CLOSED
        self._fail_all(DisconnectedError(message=f"reconnect failed after {attempt} attempts"))

    # -- protocol events ------------------------------------------------------------------------

    def _event_connected(self, event: Connected) -> None:
        self._on_connected(event)

    def _event_refused(self, event: ConnectionRefused) -> None:
        reason = event.connack.properties.reason_string or ""
        self._disconnect_error = ConnectError(event.reason_code, reason)
        waiter = self._connack_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectError(event.reason_code, reason))
            waiter.exception()
        if self._conn is not None:
            self._conn.close()

    def _event_message(self, event: MessageReceived) -> None:
        p = event.publish
        message = Message(
            p.topic,
            bytes(p.payload),
            p.qos,
            p.retain,
            dup=p.dup,
            packet_id=p.packet_id,
            properties=p.properties,
            ack=self._ack_callback() if self._manual_ack and p.qos else None,
        )
        if self._durable is not None:
            self._durable.receive(message, self._manual_ack)
        else:
            self._deliver(message)

    def _deliver(self, message: Message) -> None:
        props = message.properties
        if props.correlation_data is not None and message.topic == self._response_topic:
            fut = self._responses.pop(props.correlation_data, None)
            if fut is not None and not fut.done():
                fut.set_result(message)
            message.ack()
            return
        self._router.route(message)

    def _event_published(self, event: PublishAcked) -> None:
        pid = event.packet_id
        if self._durable is not None:
            self._durable.acked(pid)
        fut = self._pub_futures.pop(pid, None)
        if fut is not None and not fut.done():
            fut.set_result(event)
        if self._idle_waiters and self._idle():
            self._wake_idle()

    def _event_pubrec(self, event: PubRecReceived) -> None:
        if self._durable is not None:
            self._durable.pubrec(event.packet_id)

    def _event_pubrel(self, event: PubRelReceived) -> None:
        if self._durable is not None:
            self._durable.released(event.packet_id)

    def _event_subscribed(self, event: SubscribeAcked | UnsubscribeAcked) -> None:
        fut = self._req_futures.pop(event.packet_id, None)
        if fut is not None and not fut.done():
            fut.set_result(event.reason_codes)

    def _event_pong(self, event: PongReceived) -> None:
        log.debug("PINGRESP")

    # -- enhanced authentication ----------------------------------------------------------------

    def _event_auth(self, event: AuthReceived) -> None:
        if self._auth is None:  # a method set through properties=, without an authenticator
            self._auth_failed(AuthError(message="the server asked for more authentication data"))
        else:
            self._auth.on_auth(event.auth)

    def _auth_failed(self, error: AuthError) -> None:
        """The exchange failed on our side (the server is not who it claims, or a bug): close."""
        waiter = self._connack_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
            waiter.exception()
        self._disconnect_error = DisconnectedError(error.reason_code, error.message)
        conn = self._conn
        if conn is not None:
            if self._proto.is_connected:
                # [MQTT-4.12.1-2]: DISCONNECT with a reason (Not authorized is the server's).
                conn.write(self._proto.disconnect(ReasonCode.UNSPECIFIED_ERROR))
            conn.close()

    async def reauthenticate(self, *, timeout: float | None = None) -> None:
        """Re-authenticate on the live connection (MQTT 5 AUTH, Re-authenticate 0x19).

        Starts a new exchange with the authenticator's ``initial()`` data; returns once the
        server answered AUTH Success (and ``complete`` accepted it).

        Raises:
            LocalProtocolError: no enhanced authentication, not connected, or one in progress.
            AuthError: the authenticator rejected the server.
            DisconnectedError: the server refused (it disconnects) or the connection ended.
        """
        exchange = self._auth
        if exchange is None:
            raise LocalProtocolError(
                ReasonCode.PROTOCOL_ERROR, "re-authentication needs auth_method and authenticator"
            )  # [MQTT-4.12.0-7]
        async with asyncio.timeout(timeout):
            data = await exchange.initial_data()
            if self._state != _CONNECTED or self._conn is None:
                raise self._closed_error()
            await exchange.reauthenticate(data)

    # -- durable sessions -----------------------------------------------------------------------

    def _store_failed(self, error: StoreError) -> None:
        """A commit failed: the durable session cannot be kept; stop the client."""
        log.error("the session store failed; closing the client: %s", error)
        closed = DisconnectedError(message=f"session store failed: {error}")
        closed.__cause__ = error
        self._disconnect_error = closed
        previous = self._state
        self._state = _CLOSED
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None:
            task.cancel()
        self._cancel_timer()
        conn = self._conn
        if conn is not None:
            conn.abort()
        self._fail_all(closed)
        if previous == _CONNECTED:
            for handler in self._disconnected_handlers:
                self._router.call(handler, closed)

    def _dropped(self, item: Queued) -> None:
        """The offline queue dropped ``item`` (policy drop_oldest): the store forgets it."""
        if item.seq is not None and self._durable is not None:
            self._durable.dropped(item.seq)

    def _write(self, data: bytes) -> None:
        conn = self._conn
        if data and conn is not None:
            conn.write(data)

    def _idle(self) -> bool:
        return not self._proto.inflight and not self._offline

    def _wake_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_published(self, timeout: float | None = None) -> None:
        """Wait until no outgoing QoS 1/2 message is left unacknowledged (or queued).

        Messages resumed from a session store have no caller awaiting them: this is how to know
        they went through.

        Raises:
            DisconnectedError: the client closed first.
        """
        async with asyncio.timeout(timeout):
            while not self._idle():
                if self._state in (_NEW, _CLOSED):
                    raise self._closed_error()
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._idle_waiters.append(waiter)
                await waiter

    def _event_disconnected(self, event: Disconnected) -> None:
        if event.error is not None:
            log.warning("the server broke the protocol: %s", event.error)
            self._disconnect_error = DisconnectedError(event.reason_code, event.error.message)
        else:
            reason = event.properties.reason_string or event.reason_code.spec_name
            log.info("the server disconnected us: %s", reason)
            self._disconnect_error = DisconnectedError(event.reason_code, reason)
        conn = self._conn
        if conn is not None:
            conn.write(self._proto.data_to_send())
            conn.close()

    # -- messages -------------------------------------------------------------------------------

    def _ack_callback(self) -> Callable[[Message, ReasonCode], None]:
        """An acknowledger bound to this connection (thread-safe, stale after a reconnect)."""
        proto = self._proto
        epoch = proto.epoch
        loop = self._loop

        def ack(message: Message, reason_code: ReasonCode) -> None:
            def send() -> None:
                conn = self._conn
                if conn is None or proto.epoch != epoch:
                    return  # the server will deliver it again on the next connection
                conn.write(proto.ack(message.packet_id, reason_code))
                if self._durable is not None:
                    self._durable.acknowledged(message.packet_id)

            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is not None and running is not loop:
                loop.call_soon_threadsafe(send)
            else:
                send()

        return ack

    def _pause_reading(self, pause: bool) -> None:
        conn = self._conn
        if conn is not None and conn.transport is not None:
            if pause:
                conn.transport.pause_reading()
            else:
                conn.transport.resume_reading()

    # -- keep alive -----------------------------------------------------------------------------

    def _schedule_keepalive(self) -> None:
        loop = self._loop
        if loop is None:
            return
        deadline = self._proto.next_timeout(loop.time())
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._on_keepalive)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_keepalive(self) -> None:
        self._timer = None
        conn = self._conn
        if conn is None or self._loop is None:
            return
        try:
            conn.write(self._proto.on_timer(self._loop.time()))
        except RemoteProtocolError as exc:
            log.warning("keep alive: %s", exc)
            self._disconnect_error = DisconnectedError(exc.reason_code, exc.message)
            conn.write(self._proto.disconnect(exc.reason_code))
            conn.abort()
            return
        self._schedule_keepalive()

    # -- publishing -----------------------------------------------------------------------------

    @overload
    async def publish(
        self,
        topic: str,
        payload: PayloadType = b"",
        qos: _QoS0 = 0,
        retain: bool = False,
        *,
        properties: Properties | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        message_expiry_interval: int | None = None,
        content_type: str | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        timeout: float | None = None,
    ) -> None: ...

    @overload
    async def publish(
        self,
        topic: str,
        payload: PayloadType,
        qos: _QoS12,
        retain: bool = False,
        *,
        properties: Properties | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        message_expiry_interval: int | None = None,
        content_type: str | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        timeout: float | None = None,
    ) -> ReasonCode: ...

    @overload
    async def publish(
        self,
        topic: str,
        payload: PayloadType = b"",
        *,
        qos: _QoS12,
        retain: bool = False,
        properties: Properties | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        message_expiry_interval: int | None = None,
        content_type: str | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        timeout: float | None = None,
    ) -> ReasonCode: ...

    @overload
    async def publish(
        self,
        topic: str,
        payload: PayloadType = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Properties | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        message_expiry_interval: int | None = None,
        content_type: str | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        timeout: float | None = None,
    ) -> ReasonCode | None: ...

    async def publish(
        self,
        topic: str,
        payload: PayloadType = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Properties | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        message_expiry_interval: int | None = None,
        content_type: str | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        timeout: float | None = None,
    ) -> ReasonCode | None:
        """Publish a message and wait until the server acknowledged it.

        QoS 0 returns ``None`` once the bytes are handed to the transport; QoS 1 returns once
        PUBACK arrived, QoS 2 once PUBCOMP arrived. While reconnecting the message waits in the
        offline queue. With a session store, a QoS 1/2 message is in the store before its
        PUBLISH is written.

        Args:
            topic: the topic name.
            payload: ``bytes``-like, ``str`` (UTF-8), a number (its decimal text) or ``None``.
            qos: 0 at most once, 1 at least once, 2 exactly once.
            retain: ask the server to keep the message as the topic's retained message.
            properties: MQTT 5 PUBLISH properties; the keyword arguments below add to them.
            user_properties: MQTT 5 User Properties.
            message_expiry_interval: MQTT 5 Message Expiry Interval in seconds.
            content_type: MQTT 5 Content Type.
            response_topic: MQTT 5 Response Topic.
            correlation_data: MQTT 5 Correlation Data.
            timeout: seconds to wait for the acknowledgement (the message stays in flight).

        Returns:
            QoS 1/2: the reason code of the acknowledgement (e.g. ``NO_MATCHING_SUBSCRIBERS``);
            QoS 0: ``None``.

        Raises:
            NegativeAckError: the server refused the message (a failure reason code).
            LocalProtocolError: the message breaks a rule or a server limit.
            DisconnectedError: the client is closed.
            OfflineQueueFull: per ``offline_policy``.
        """
        props = properties or NO_PROPERTIES
        if (
            message_expiry_interval is not None
            or content_type is not None
            or response_topic is not None
            or correlation_data is not None
            or user_properties
        ):
            extra: dict[str, Any] = {
                name: value
                for name, value in (
                    ("message_expiry_interval", message_expiry_interval),
                    ("content_type", content_type),
                    ("response_topic", response_topic),
                    ("correlation_data", correlation_data),
                )
                if value is not None
            }
            if user_properties:
                extra["user_properties"] = props.user_properties + tuple(user_properties)
            props = props.replace(**extra)
        data = _payload(payload)
        if timeout is None and self._state == _CONNECTED and not self._offline:
            # The common case, without a timeout scope: send and wait for the acknowledgement.
            conn = self._conn
            assert conn is not None
            fut = self._send_publish(conn, topic, data, qos, retain, props)
            if fut is None:
                await conn.drain()
                return None
            ack = await fut
            if ack.reason_code.is_failure:
                raise NegativeAckError(
                    ack.reason_code, ack.properties.reason_string or ack.reason_code.spec_name
                )
            return ack.reason_code
        async with asyncio.timeout(timeout):
            while True:
                state = self._state
                if state == _CONNECTED and not self._offline:
                    conn = self._conn
                    assert conn is not None
                    fut = self._send_publish(conn, topic, data, qos, retain, props)
                    if fut is None:
                        await conn.drain()
                        return None
                    break
                if state in (_NEW, _CLOSED):
                    raise self._closed_error()
                durable = self._durable
                seq = durable.new_seq() if durable is not None and qos else None
                queued = await self._offline.put(topic, data, qos, retain, props, seq)
                if queued is not None:
                    if durable is not None and seq is not None:
                        durable.queued(seq, topic, data, qos, retain, props)
                    fut = queued
                    break
            ack = await fut
        if ack.reason_code.is_failure:
            raise NegativeAckError(
                ack.reason_code, ack.properties.reason_string or ack.reason_code.spec_name
            )
        return ack.reason_code

    def _send_publish(
        self,
        conn: Connection,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        props: Properties,
    ) -> asyncio.Future[PublishAcked] | None:
        if self._durable is not None and qos:
            pid = self._durable.publish(topic, payload, qos, retain, props)  # sent once stored
        else:
            pid, data = self._proto.publish(topic, payload, qos, retain, props)
            conn.write(data)
            if not qos:
                return None
        fut: asyncio.Future[PublishAcked] = asyncio.get_running_loop().create_future()
        self._pub_futures[pid] = fut
        return fut

    def _flush_offline(self, conn: Connection) -> None:
        durable = self._durable
        for item in self._offline.drain():
            seq = item.seq
            try:
                pid, data = self._proto.publish(
                    item.topic, item.payload, item.qos, item.retain, item.properties, tag=seq or 0
                )
            except LocalProtocolError as exc:
                fail_future(item.future, exc)
                if durable is not None and seq is not None:
                    durable.dropped(seq)
                continue
            if durable is not None and seq is not None:
                durable.sent(seq, pid)  # sent once stored
            else:
                conn.write(data)
            if item.qos:
                if not item.future.done():
                    self._pub_futures[pid] = item.future
            else:
                item.future.set_result(PublishAcked(0))
        self._offline.wake()

    # -- subscribing ----------------------------------------------------------------------------

    @overload
    async def subscribe(
        self,
        topic_filter: str | Subscription,
        qos: int = 0,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        subscription_identifier: int | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> ReasonCode: ...

    @overload
    async def subscribe(
        self,
        topic_filter: SubscribeList,
        qos: int = 0,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        subscription_identifier: int | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> list[ReasonCode]: ...

    async def subscribe(
        self,
        topic_filter: SubscribeTarget,
        qos: int = 0,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        subscription_identifier: int | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> ReasonCode | list[ReasonCode]:
        """Subscribe to one topic filter or several at once.

        Args:
            topic_filter: a filter (``"a/+/c"``, ``"$share/group/a/#"``), a ``Subscription``, or a
                list of filters, ``(filter, qos)`` pairs and ``Subscription`` objects.
            qos: the maximum QoS for filters given without one.
            no_local: MQTT 5 No Local: do not receive this client's own publishes.
            retain_as_published: MQTT 5 Retain As Published: keep the publisher's RETAIN flag.
            retain_handling: MQTT 5 Retain Handling: 0 send retained messages on subscribe,
                1 only if the subscription is new, 2 never.
            subscription_identifier: MQTT 5 Subscription Identifier (1..268435455), echoed in
                the messages this subscription delivers.
            user_properties: MQTT 5 User Properties.
            timeout: seconds to wait for SUBACK.

        Returns:
            For one filter, its reason code (the granted QoS); for a list, one code per filter
            (failures included, never raised).

        Raises:
            NegativeAckError: the single filter was refused.
        """
        single = isinstance(topic_filter, str | Subscription)
        items: Sequence[SubscribeItem] = (
            [cast(str | Subscription, topic_filter)]
            if single
            else cast(SubscribeList, topic_filter)
        )
        subs: list[Subscription] = []
        for item in items:
            if isinstance(item, Subscription):
                subs.append(item)
                continue
            name, item_qos = (item, qos) if isinstance(item, str) else item
            subs.append(
                Subscription(name, item_qos, no_local, retain_as_published, retain_handling)
            )
        fields: dict[str, Any] = {}
        if subscription_identifier is not None:
            fields["subscription_identifiers"] = (subscription_identifier,)
        if user_properties:
            fields["user_properties"] = tuple(user_properties)
        props = Properties(**fields) if fields else NO_PROPERTIES
        codes = await self._request(lambda: self._proto.subscribe(subs, props), timeout)
        for sub, code in zip(subs, codes, strict=False):
            if not code.is_failure:
                self._subscriptions[sub.topic_filter] = (sub, props)
        if single:
            if codes[0].is_failure:
                raise NegativeAckError(codes[0], f"subscription to {subs[0].topic_filter!r}")
            return codes[0]
        return list(codes)

    async def unsubscribe(
        self,
        topic_filter: str | Sequence[str],
        *,
        user_properties: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> list[ReasonCode]:
        """Unsubscribe from one or several topic filters; one reason code per filter."""
        filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        props = (
            Properties(user_properties=tuple(user_properties)) if user_properties else NO_PROPERTIES
        )
        for name in filters:
            self._subscriptions.pop(name, None)
        codes = await self._request(lambda: self._proto.unsubscribe(filters, props), timeout)
        return list(codes)

    async def _request(
        self, make: Callable[[], tuple[int, bytes]], timeout: float | None
    ) -> tuple[ReasonCode, ...]:
        """Send SUBSCRIBE/UNSUBSCRIBE and wait for its answer; retried across reconnects."""
        async with asyncio.timeout(timeout):
            while True:
                await self.wait_connected()
                conn = self._conn
                assert conn is not None
                pid, data = make()
                fut: asyncio.Future[tuple[ReasonCode, ...]] = (
                    asyncio.get_running_loop().create_future()
                )
                self._req_futures[pid] = fut
                conn.write(data)
                try:
                    return await fut
                except DisconnectedError:
                    if self._state != _RECONNECTING:
                        raise

    def _fail_requests(self, packet_ids: list[int], error: MQTTError) -> None:
        for pid in packet_ids:
            fut = self._req_futures.pop(pid, None)
            if fut is not None:
                fail_future(fut, error)

    # -- request / response ---------------------------------------------------------------------

    async def request(
        self,
        topic: str,
        payload: PayloadType = b"",
        *,
        qos: int = 1,
        timeout: float = 10.0,
        properties: Properties | None = None,
    ) -> Message:
        """Send a request and wait for its response (MQTT 5 Response Topic + Correlation Data).

        The client subscribes once to a private response topic; the responder publishes to the
        request's Response Topic with the same Correlation Data (see ``respond``).
        """
        if self.version != 5:
            raise LocalProtocolError(
                ReasonCode.PROTOCOL_ERROR, "request/response needs MQTT 5 properties"
            )
        async with asyncio.timeout(timeout):
            async with self._response_lock:
                if self._response_topic is None:
                    topic_name = f"wrenmq/response/{self.client_id}/{uuid.uuid4().hex[:12]}"
                    await self.subscribe(topic_name, qos=1)
                    self._response_topic = topic_name
            correlation = uuid.uuid4().bytes
            fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            self._responses[correlation] = fut
            try:
                await self.publish(
                    topic,
                    payload,
                    qos,
                    properties=(properties or NO_PROPERTIES).replace(
                        response_topic=self._response_topic, correlation_data=correlation
                    ),
                )
                return await fut
            finally:
                self._responses.pop(correlation, None)

    async def respond(
        self, request: Message, payload: PayloadType = b"", *, qos: int | None = None
    ) -> ReasonCode | None:
        """Publish the response to ``request`` on its Response Topic with its Correlation Data."""
        topic = request.properties.response_topic
        if not topic:
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "the message has no response topic")
        return await self.publish(
            topic,
            payload,
            request.qos if qos is None else qos,
            correlation_data=request.properties.correlation_data,
        )

    # -- closing --------------------------------------------------------------------------------

    def _closed_error(self) -> DisconnectedError:
        error = self._disconnect_error
        if isinstance(error, DisconnectedError):
            return error
        return DisconnectedError(message="the client is not connected")

    async def disconnect(
        self,
        reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION,
        *,
        session_expiry: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        """Send DISCONNECT, close the connection, and end streams and pending calls.

        Args:
            reason_code: MQTT 5 reason; ``DISCONNECT_WITH_WILL_MESSAGE`` still publishes the will.
            session_expiry: MQTT 5: a new Session Expiry Interval for the session left behind.
            timeout: seconds to wait for the connection to close.
        """
        previous = self._state
        self._state = _CLOSED
        task = self._reconnect_task
        self._reconnect_task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._cancel_timer()
        conn = self._conn
        if conn is not None:
            props = (
                Properties(session_expiry_interval=session_expiry)
                if session_expiry is not None
                else NO_PROPERTIES
            )
            try:
                conn.write(self._proto.disconnect(reason_code, props))
            finally:
                conn.close()
                try:
                    async with asyncio.timeout(timeout):
                        await asyncio.shield(conn.closed)
                except TimeoutError:
                    conn.abort()
        if self._conn is not None:  # connection_lost not run (yet): end it here
            self._conn = None
            self._fail_requests(self._proto.connection_lost(), DisconnectedError())
        if self._durable is not None:
            await self._durable.flush()  # what waits for the store runs before the end
        await self._router.close()
        error = DisconnectedError(reason_code, "the client disconnected")
        self._disconnect_error = error
        self._fail_all(error, end_streams=False)
        if self._durable is not None:
            await self._durable.close()
        self._connected_event.clear()
        if previous == _CONNECTED:
            for handler in self._disconnected_handlers:
                self._router.call(handler, error)

    def _fail_all(self, error: MQTTError, end_streams: bool = True) -> None:
        """End every pending call with ``error``; end the streams (raising it when asked)."""
        pending: list[asyncio.Future[Any]] = [
            *self._pub_futures.values(),
            *self._req_futures.values(),
            *self._responses.values(),
        ]
        self._pub_futures.clear()
        self._req_futures.clear()
        self._responses.clear()
        for fut in pending:
            fail_future(fut, error)
        self._offline.fail(error)
        if self._auth is not None:
            self._auth.abandon(error)
        if self._durable is not None:
            self._durable.clear_inbox()
        self._wake_idle()
        self._connected_event.set()  # wake wait_connected() so it sees the closed state
        self._connected_event.clear()
        self._router.finish(error if end_streams else None)


_EVENT_HANDLERS: Final[dict[type, Callable[[Client, Any], None]]] = {
    Connected: Client._event_connected,
    ConnectionRefused: Client._event_refused,
    MessageReceived: Client._event_message,
    PublishAcked: Client._event_published,
    SubscribeAcked: Client._event_subscribed,
    UnsubscribeAcked: Client._event_subscribed,
    PongReceived: Client._event_pong,
    AuthReceived: Client._event_auth,
    Disconnected: Client._event_disconnected,
    PubRecReceived: Client._event_pubrec,
    PubRelReceived: Client._event_pubrel,
}
