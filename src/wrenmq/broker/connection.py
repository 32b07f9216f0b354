"""One client connection: an ``asyncio.Protocol`` that feeds the codec and batches writes.

The hot path never awaits and never creates a task: ``data_received`` decodes every complete
packet and hands it to ``dispatch``; writes are collected per connection and flushed once per event
loop iteration, so a burst of deliveries to one subscriber becomes one ``write``. Back-pressure:
``pause_writing`` marks the connection congested and deliveries queue in the session instead.

Reading is paused for four independent reasons, each with its own state: back-pressure from slow
subscribers (``waiting_on``/``paused_at``), the client's own rate limits (``throttle_handle``, see
:mod:`wrenmq.broker.limits`), output the client does not read (``congested``: a client that
sends PINGREQs or SUBSCRIBEs without reading the answers must not make the broker buffer without
bound), and an answer being awaited (``pending``: a pluggable authenticator, authorizer or
enhanced authentication step that is a coroutine; see ``suspend``). What arrives while any
holds waits, in order: decoded packets in ``backlog``, bytes not yet decoded in ``raw_pending``;
reading resumes when none holds.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from wrenmq.broker import dispatch
from wrenmq.codec.decode import StreamDecoder
from wrenmq.codec.encode import PublishTemplate, encode
from wrenmq.codec.packets import ConnAck, Connect, Disconnect, Packet
from wrenmq.codec.properties import NO_PROPERTIES, Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import MQTTError

if TYPE_CHECKING:
    from wrenmq.broker.auth.acl import Access
    from wrenmq.broker.auth.enhanced import AuthMethod
    from wrenmq.broker.broker import Broker
    from wrenmq.broker.config import ListenerConfig
    from wrenmq.broker.hooks import Verdict
    from wrenmq.broker.limits import ClientLimiter
    from wrenmq.broker.sessions import Session

__all__ = ["Connection"]

log = logging.getLogger("wrenmq.broker")

_T = TypeVar("_T")

CONNECTING, CONNECTED, CLOSED = 0, 1, 2
WRITE_HIGH_WATER = 256 * 1024
# Bytes decoded at a time. A read holds up to 256 KiB, and decoded packets take tens of times the
# room of their bytes (a SUBSCRIBE of 8 bytes is a few hundred bytes of objects): when reading is
# held mid-read, the rest is kept as bytes (``raw_pending``), not as packets.
READ_SLICE = 4096
# Bytes read on while an answer is awaited (``suspend``) before reading pauses.
PENDING_READ_LIMIT = 64 * 1024


class Connection(asyncio.Protocol):
    """The broker's side of one network connection."""

    __slots__ = (
        "_wbuf",
        "_wbytes",
        "aliases",
        "auth_exchange",
        "auth_method",
        "backlog",
        "broker",
        "client_id",
        "congested",
        "congested_at",
        "connect_packet",
        "created_at",
        "decoder",
        "granted",
        "keepalive",
        "last_rx",
        "limiter",
        "listener",
        "max_packet_size",
        "paused_at",
        "peer",
        "pending",
        "pending_error",
        "problem_info",
        "raw_pending",
        "receive_maximum",
        "session",
        "source_ip",
        "state",
        "throttle_handle",
        "topic_alias_max",
        "transport",
        "username",
        "version",
        "waiting_on",
        "will_pending",
    )

    def __init__(self, broker: Broker, listener: ListenerConfig | None = None) -> None:
        self.broker = broker
        self.listener = listener
        self.username: str | None = None
        self.transport: asyncio.Transport | None = None
        self.decoder = StreamDecoder(max_packet_size=broker.config.max_packet_size)
        self.state = CONNECTING
        self.version = 4
        self.client_id = ""
        self.peer = "?"
        self.session: Session | None = None
        self.keepalive = 0
        self.created_at = 0.0
        self.last_rx = 0.0
        self.congested = False
        self.congested_at = 0.0
        self.aliases: dict[int, str] = {}
        self.topic_alias_max = 0
        self.receive_maximum = 65535
        self.max_packet_size = 0  # the client's Maximum Packet Size (0 = none)
        self.problem_info = True
        self.will_pending = True  # cleared by a normal DISCONNECT
        # Back-pressure: while subscriber sessions in ``waiting_on`` drain, reading is paused and
        # the rest of the current packet batch waits in ``backlog``.
        self.waiting_on: list[Session] = []
        self.backlog: list[Packet] = []
        self.paused_at = 0.0
        self.pending_error: MQTTError | None = None
        self.raw_pending = b""  # bytes received but not decoded while reading is held
        # Limits: per-address accounting (set once admitted) and the client's rate buckets.
        self.source_ip: str | None = None
        self.limiter: ClientLimiter | None = None
        self.throttle_handle: asyncio.TimerHandle | None = None
        # Enhanced authentication: the CONNECT's method and the exchange in progress.
        self.auth_method: str | None = None
        self.auth_exchange: AuthMethod | None = None
        self.connect_packet: Connect | None = None  # the CONNECT an exchange will finish
        # An awaited answer holds reading (``suspend``); authorizer verdicts it brought back,
        # by (topic, access), each used once by the packet handled again.
        self.pending: asyncio.Future[Any] | None = None
        self.granted: dict[tuple[str, Access], Verdict] | None = None
        self._wbuf: list[bytes | bytearray] | None = None
        self._wbytes = 0  # bytes in _wbuf

    def __repr__(self) -> str:
        return f"Connection({self.client_id!r} from {self.peer})"

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        # uvloop's transports are not asyncio.Transport subclasses, hence a cast.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.created_at = self.last_rx = self.broker.loop.time()
        self.broker.connection_opened(self)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if self.state == CLOSED:
            return
        now = self.last_rx = self.broker.loop.time()
        self.broker.stats.bytes_received += len(data)
        limiter = self.limiter
        if limiter is not None and limiter.bytes is not None:
            debt = limiter.received(len(data), now)
            if debt and not self.over_rate(debt, "byte rate"):
                error = MQTTError(ReasonCode.QUOTA_EXCEEDED, "byte rate above byte_rate_limit")
                dispatch.fail(self, error)
                return
        if self.raw_pending or self.held():
            self.raw_pending += data  # reading is held: these wait their turn, in order
            transport = self.transport
            pending = self.pending is not None and len(self.raw_pending) > PENDING_READ_LIMIT
            if pending and transport is not None:
                transport.pause_reading()
        else:
            self._consume(data)

    def _consume(self, data: bytes) -> None:
        """Decode and handle ``data`` a slice at a time; keep the rest if reading gets held."""
        decoder = self.decoder
        n = len(data)
        start = 0
        while True:
            end = n if n - start <= READ_SLICE else start + READ_SLICE
            packets = decoder.feed(data if end - start == n else data[start:end])
            if packets:
                dispatch.dispatch(self, packets)
            if decoder.error is not None:
                if self.state != CLOSED:
                    if self.held():
                        self.pending_error = decoder.error  # after the backlog, in order
                    else:
                        dispatch.fail(self, decoder.error)
                return
            start = end
            if start >= n or self.state == CLOSED:
                return
            if self.held():
                self.raw_pending = data[start:]
                return

    def eof_received(self) -> bool:  # noqa: D102
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.state = CLOSED
        self._wbuf = None
        self.backlog = []
        self.raw_pending = b""
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.throttle_handle is not None:
            self.throttle_handle.cancel()
            self.throttle_handle = None
        for session in self.waiting_on:
            if self in session.blocked:
                session.blocked.remove(self)
        self.waiting_on = []
        self.broker.connection_closed(self, exc)

    def pause_writing(self) -> None:  # noqa: D102
        self.congested = True
        self.congested_at = self.broker.loop.time()
        # Nor read more from a client that does not read what it is sent: each packet it sends
        # may produce an answer (PINGRESP, acks, retained messages) that would pile up here.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:  # noqa: D102
        self.congested = False
        self._pardon(self.congested_at)
        session = self.session
        if session is not None and session.queue:
            session.pump()
        self.broker.loop.call_soon(self._resume)

    # -- back-pressure ---------------------------------------------------------------------------

    def block_on(self, sessions: list[Session]) -> None:
        """Pause reading until every session in ``sessions`` has drained its queue."""
        for session in sessions:
            if session not in self.waiting_on and session.conn is not self:
                self.waiting_on.append(session)
                session.blocked.append(self)
        if self.waiting_on and self.transport is not None and not self.paused_at:
            self.paused_at = self.broker.loop.time()
            self.transport.pause_reading()

    def unblock(self, session: Session) -> None:
        """``session`` drained: resume once nothing else holds this publisher."""
        if session in self.waiting_on:
            self.waiting_on.remove(session)
        if not self.waiting_on and self.paused_at:
            self._pardon(self.paused_at)
            self.paused_at = 0.0
            self.broker.loop.call_soon(self._resume)

    def _pardon(self, since: float) -> None:
        """The broker held reading since ``since``: credit the client's rate limits for it."""
        limiter = self.limiter
        if limiter is not None:
            now = self.broker.loop.time()
            limiter.pardon(now, now - since)

    def held(self) -> bool:
        """Whether reading is held: by back-pressure, the rate limit, unread output or an
        awaited answer.
        """
        return (
            bool(self.waiting_on)
            or self.throttle_handle is not None
            or self.congested
            or self.pending is not None
        )

    # -- awaiting an answer ----------------------------------------------------------------------

    def suspend(self, answer: Awaitable[_T], then: Callable[[_T], None]) -> None:
        """Hold this connection until ``answer`` is in, then call ``then(result)``.

        For the few packets that need a coroutine's answer (a pluggable authenticator, an
        authorizer verdict not in the cache, an enhanced authentication step): later packets of
        the batch wait in ``backlog``, and bytes read meanwhile in ``raw_pending`` (reading
        pauses past ``PENDING_READ_LIMIT``); they run after ``then``, in order. ``then``
        may raise ``MQTTError`` to close the connection with that reason code. ``answer`` must
        not raise (a failure is the caller's to turn into a verdict); if it does, the connection
        is closed with 0x83.
        """
        future = asyncio.ensure_future(answer)
        self.pending = future
        # Reading goes on into ``raw_pending`` (no pause/resume per awaited packet, which costs
        # two epoll changes); ``data_received`` pauses it if the client sends too much meanwhile.
        future.add_done_callback(lambda f: self._answered(f, then))

    def _answered(self, future: asyncio.Future[_T], then: Callable[[_T], None]) -> None:
        if self.pending is not future or self.state == CLOSED:
            return  # the connection went away meanwhile
        self.pending = None
        try:
            then(future.result())
        except MQTTError as exc:
            dispatch.fail(self, exc)
            return
        except Exception:
            log.exception(
                "internal error completing a packet from %r (%s)", self.client_id, self.peer
            )
            dispatch.fail(
                self, MQTTError(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, "internal error")
            )
            return
        self._resume()

    def _resume(self) -> None:
        if self.state == CLOSED or self.held():
            return
        backlog, self.backlog = self.backlog, []
        if backlog:
            dispatch.dispatch(self, backlog)
        if self.state == CLOSED or self.held():
            return
        if self.pending_error is not None:
            error, self.pending_error = self.pending_error, None
            dispatch.fail(self, error)
            return
        raw, self.raw_pending = self.raw_pending, b""
        if raw:
            self._consume(raw)
            if self.state == CLOSED or self.held():
                return
        self.last_rx = self.broker.loop.time()
        if self.transport is not None:
            self.transport.resume_reading()

    # -- rate limits -----------------------------------------------------------------------------

    def over_rate(self, debt: float, what: str) -> bool:
        """The client went ``debt`` seconds over a rate limit; True if it may go on (throttled).

        ``"throttle"``: stop reading until the debt is repaid, and return True.
        ``"disconnect"``: return False; the caller closes the connection with its reason code.
        """
        broker = self.broker
        broker.stats.rate_limited += 1
        if broker.config.rate_limit_action == "disconnect":
            return False
        limiter = self.limiter
        if limiter is not None and not limiter.logged:
            limiter.logged = True
            log.info("throttling %r (%s): %s above the limit", self.client_id, self.peer, what)
        self.throttle(debt)
        return True

    def throttle(self, delay: float) -> None:
        """Stop reading for ``delay`` seconds (or longer if already throttled for longer)."""
        if self.state == CLOSED or self.transport is None:
            return
        loop = self.broker.loop
        handle = self.throttle_handle
        if handle is not None:
            if handle.when() >= loop.time() + delay:
                return
            handle.cancel()
        self.throttle_handle = loop.call_later(delay, self._unthrottle)
        self.transport.pause_reading()

    def _unthrottle(self) -> None:
        self.throttle_handle = None
        self._resume()  # resumes reading unless back-pressure still holds it

    # -- writing --------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray) -> None:
        """Queue bytes for the next flush (once per event loop iteration)."""
        buf = self._wbuf
        if buf is None:
            if self.state == CLOSED:
                return
            self._wbuf = [data]
            self._wbytes = len(data)
            self.broker.schedule_flush(self)
        else:
            buf.append(data)
            self._wbytes += len(data)
            if self._wbytes > WRITE_HIGH_WATER:
                # One batch made this much for one client: write it now, so the transport's
                # high-water mark (pause_writing) stops the batch before it makes more.
                self.flush()

    def flush(self) -> None:
        """Write everything queued by ``write`` in one call."""
        buf = self._wbuf
        self._wbuf = None
        transport = self.transport
        if not buf or transport is None or transport.is_closing():
            return
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        self.broker.stats.bytes_sent += len(data)
        transport.write(data)

    def send(self, packet: Packet) -> None:
        """Encode ``packet`` for this connection's protocol level and queue it."""
        self.write(encode(packet, self.version))

    def send_pubrel(self, packet_id: int) -> None:
        """Queue a PUBREL."""
        self.write(b"\x62\x02" + packet_id.to_bytes(2, "big"))

    def send_publish(
        self,
        template: PublishTemplate,
        qos: int,
        packet_id: int,
        retain: bool,
        dup: bool,
        sub_ids: tuple[int, ...],
        expires_at: float | None,
    ) -> bool:
        """Queue one PUBLISH; False if it was not sent (expired, or too large for this client)."""
        broker = self.broker
        if expires_at is not None:
            remaining = expires_at - broker.loop.time()
            if remaining <= 0:
                broker.message_dropped(self.session, template, "expired")
                return False
            if self.version == 5:
                left = math.ceil(remaining)
                if left < (template.properties.message_expiry_interval or 0):
                    # [MQTT-3.3.2-6]: the interval sent is what is left of it.
                    template = template.with_properties(
                        template.properties.replace(message_expiry_interval=left)
                    )
        data = template.for_receiver(
            self.version, qos, packet_id, retain=retain, dup=dup, subscription_identifiers=sub_ids
        )
        if self.max_packet_size and len(data) > self.max_packet_size:
            # [MQTT-3.1.2-25]: never send a packet larger than the client accepts; drop it.
            broker.message_dropped(self.session, template, "larger than the client's maximum")
            return False
        self.write(data)
        broker.stats.messages_sent += 1
        return True

    # -- closing --------------------------------------------------------------------------------

    def refuse(self, reason: ReasonCode, message: str = "") -> None:
        """Answer CONNECT with a failure CONNACK and close [MQTT-3.2.2-7]."""
        props = NO_PROPERTIES
        if self.version == 5 and message and self.problem_info:
            props = Properties(reason_string=message)
        self.send(ConnAck(False, reason, props))
        self.close_now()

    def disconnect(self, reason: ReasonCode, message: str = "") -> None:
        """Send DISCONNECT with ``reason`` (MQTT 5 only) and close [MQTT-4.13.2-1]."""
        if self.state == CONNECTED and self.version == 5:
            props = NO_PROPERTIES
            if message and self.problem_info:
                props = Properties(reason_string=message[:200])
            self.send(Disconnect(reason, props))
        self.close_now()

    def close_now(self) -> None:
        """Flush what is queued and close the transport."""
        if self.state == CLOSED:
            return
        self.flush()
        self.state = CLOSED
        if self.transport is not None:
            self.transport.close()


def connection_info(conn: Connection) -> dict[str, Any]:
    """A snapshot of a connection for the public API."""
    return {
        "client_id": conn.client_id,
        "peer": conn.peer,
        "protocol_level": conn.version,
        "keepalive": conn.keepalive,
    }
