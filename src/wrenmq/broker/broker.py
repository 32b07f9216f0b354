"""The broker facade: start, serve, stop; wires config, listeners, sessions, routing and hooks.

Embed it in any asyncio program::

    async with Broker(port=1883) as broker:
        broker.publish("greetings", b"hello")
        await broker.serve_forever()

Everything the network side does happens in ``Connection`` callbacks without awaiting; timers
(keep alive, connect timeout, session expiry, will delay, ``$SYS``) are ``call_later`` handles.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wrenmq.broker.auth.acl import Access, AclFile
from wrenmq.broker.auth.base import (
    AuthChain,
    Authenticator,
    Authorizer,
    PasswordFileAuthenticator,
    load_plugin,
)
from wrenmq.broker.auth.enhanced import AuthMethodFactory, ScramSha256
from wrenmq.broker.auth.passwd import PasswordFile
from wrenmq.broker.authorize import DeliveryAcl
from wrenmq.broker.config import BrokerConfig
from wrenmq.broker.connection import CLOSED, CONNECTING, Connection
from wrenmq.broker.durable import Durable
from wrenmq.broker.hooks import HookEvent, Hooks
from wrenmq.broker.limits import ClientLimiter, IpLimits
from wrenmq.broker.listener import Listening, open_listener, reload_certificates, tls_contexts
from wrenmq.broker.persistence.base import SessionStore
from wrenmq.broker.persistence.sqlite import SQLiteStore
from wrenmq.broker.retain import RetainedStore
from wrenmq.broker.router import deliver_shared, reader, route
from wrenmq.broker.sessions import SESSION_NEVER_EXPIRES, Outgoing, Session, SubOptions
from wrenmq.broker.subs import SubscriptionIndex
from wrenmq.broker.sys_tree import SysTree
from wrenmq.codec.encode import PublishTemplate
from wrenmq.codec.packets import Will
from wrenmq.codec.properties import NO_PROPERTIES, Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.topics import validate_topic_name

__all__ = ["Broker", "BrokerStats", "SessionInfo"]

log = logging.getLogger("wrenmq.broker")

SWEEP_INTERVAL = 1.0
DURABLE_MEMORY_QUEUE = 1000  # queued deliveries a persistent session keeps in memory
BACKPRESSURE_PATIENCE = 2.0  # seconds a publisher may stay paused by one set of subscribers


class BrokerStats:
    """Counters, published under ``$SYS`` and readable by embedders."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "connections_refused",
        "connections_total",
        "messages_dropped",
        "messages_received",
        "messages_sent",
        "protocol_errors",
        "rate_limited",
    )

    def __init__(self) -> None:
        self.bytes_received = 0
        self.bytes_sent = 0
        self.connections_refused = 0  # closed on accept by max_connections_per_ip / rate
        self.connections_total = 0
        self.messages_dropped = 0
        self.messages_received = 0
        self.messages_sent = 0
        self.protocol_errors = 0
        self.rate_limited = 0  # times a client went over message_rate_limit / byte_rate_limit


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A snapshot of one session for the public API."""

    client_id: str
    connected: bool
    protocol_level: int
    peer: str | None
    subscriptions: dict[str, int]
    inflight: int
    queued: int
    dropped: int
    expiry_interval: int


class Broker:
    """An MQTT 3.1 / 3.1.1 / 5.0 broker.

    Args:
        config: a ``BrokerConfig`` (e.g. from ``load_toml``); keyword arguments override it or,
            without it, build one (``Broker(port=1884, max_inflight_messages=50)``). ``port`` and
            ``bind_address`` keywords set the default listener.
        store: Where sessions and retained messages are kept (default: SQLite in
            ``persistence_location`` when ``persistence`` is on, else memory).
        authenticators: Asked in order at CONNECT after the password file (``Authenticator``:
            ``async authenticate(client_id, username, password, peer) -> Verdict``).
        authorizers: Asked in order for PUBLISH and SUBSCRIBE access the ACL file does not
            settle (``Authorizer``: ``async authorize(client_id, username, topic, access)``).
        auth_methods: MQTT 5 enhanced authentication methods by name (factories of
            ``broker.auth.enhanced.AuthMethod``); ``"SCRAM-SHA-256"`` is built in whenever a
            password file is configured.
    """

    def __init__(
        self,
        config: BrokerConfig | None = None,
        *,
        store: SessionStore | None = None,
        authenticators: Sequence[Authenticator] = (),
        authorizers: Sequence[Authorizer] = (),
        auth_methods: Mapping[str, AuthMethodFactory] | None = None,
        **kwargs: Any,
    ) -> None:
        if config is None:
            config = BrokerConfig.from_kwargs(**kwargs)
        elif kwargs:
            config = config.replace(**kwargs)
        self.config = config
        plugins = [load_plugin(spec) for spec in config.auth_plugins]
        self._authenticators = [*authenticators]
        self._authorizers = [*authorizers]
        self._auth_methods = dict(auth_methods or {})
        for plugin in plugins:
            if hasattr(plugin, "authenticate"):
                self._authenticators.append(plugin)
            if hasattr(plugin, "authorize"):
                self._authorizers.append(plugin)
            self._auth_methods.update(getattr(plugin, "auth_methods", None) or {})
        self.authenticator: AuthChain | None = None  # None: the password file alone, inline
        self.authorizer: AuthChain | None = None  # None: the ACL file alone, inline
        self.auth_methods: dict[str, AuthMethodFactory] = {}
        self.hooks = Hooks()
        self.stats = BrokerStats()
        self.index: SubscriptionIndex[Session, SubOptions] = SubscriptionIndex()
        self.retained = RetainedStore(
            max_count=config.retained_messages_max_count,
            max_size=config.retained_message_max_size,
        )
        self.sessions: dict[str, Session] = {}
        self.passwords: PasswordFile | None = None
        self.acl: AclFile | None = None
        self.read_acl: AclFile | DeliveryAcl | None = None  # the READ check on delivery
        self.reload_auth()
        self.tls_contexts = tls_contexts(config)  # by listener index; reload_tls() reloads them
        self.connections: set[Connection] = set()
        self.connected_count = 0
        ip_limits = IpLimits(
            max_connections=config.max_connections_per_ip, rate=config.connection_rate_per_ip
        )
        self.ip_limits = ip_limits if ip_limits.enabled else None
        self.started_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[Listening] = []
        self._dirty: list[Connection] = []
        self.pressure: list[Session] = []  # sessions whose queue crossed the high-water mark
        self._flush_scheduled = False
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._sys = SysTree(self)
        self._stopped: asyncio.Event | None = None
        if store is None and config.persistence:
            store = SQLiteStore(
                config.persistence_location,
                durability=config.durability,
                flush_interval=config.flush_interval_ms / 1000,
            )
        self.store = store
        self.durable: Durable | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the broker runs on."""
        if self._loop is None:
            raise RuntimeError("the broker is not started")
        return self._loop

    async def start(self) -> None:
        """Open every listener and start the timers."""
        loop = self._loop = asyncio.get_running_loop()
        self.started_at = time.time()
        self._stopped = asyncio.Event()
        try:
            if self.store is not None:
                durable = Durable(
                    self,
                    self.store,
                    mode=self.config.durability,
                    memory_queue=min(self.config.max_queued_messages, DURABLE_MEMORY_QUEUE),
                )
                await durable.start()
                # Only a started store is stopped by stop(): one that failed to open would
                # replace its error ("... is corrupt; move it aside") by "the store is closed".
                self.durable = durable
            for index, listener in enumerate(self.config.listeners):
                server = await open_listener(self, listener, self.tls_contexts.get(index))
                self._servers.append(server)
                for host, port in self.addresses[-len(list(server.sockets)) :]:
                    log.info("listening on %s:%d (%s)", host, port, listener.protocol)
        except BaseException:
            await self.stop()
            raise
        self._sweep_handle = loop.call_later(SWEEP_INTERVAL, self._sweep)
        self._sys.start()

    async def stop(self) -> None:
        """Close the listeners and every connection (MQTT 5 clients get 0x8B)."""
        for server in self._servers:
            server.close()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        self._sys.stop()
        for conn in list(self.connections):
            conn.disconnect(ReasonCode.SERVER_SHUTTING_DOWN)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for session in list(self.sessions.values()):
            for handle in (session.expiry_handle, session.will_handle):
                if handle is not None:
                    handle.cancel()
        if self.durable is not None:
            durable, self.durable = self.durable, None
            await durable.stop()
        if self._stopped is not None:
            self._stopped.set()

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Run until ``stop()`` is called."""
        if self._stopped is None:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every listening socket, in listener order."""
        out = []
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                out.append((name[0], name[1]))
        return out

    @property
    def port(self) -> int:
        """The port of the first listener (useful with port 0)."""
        return self.addresses[0][1]

    # -- hooks ----------------------------------------------------------------------------------

    def intercept(
        self, event: HookEvent | str
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering an interceptor: ``@broker.intercept("message_publishing")``."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.hooks.add_interceptor(event, fn)
            return fn

        return register

    def on(self, event: HookEvent | str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering an observer: ``@broker.on("client_connected")``."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.hooks.add_observer(event, fn)
            return fn

        return register

    # -- public API -----------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        qos: int = 0,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
    ) -> int:
        """Publish from inside the process; returns how many deliveries were made."""
        validate_topic_name(topic)
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS {qos}")
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        return self.publish_message(topic, data, qos, retain, properties, "")

    def reload_auth(self) -> None:
        """(Re)load the password and ACL files; connections stay up (SIGHUP does this).

        Raises:
            ConfigError: a file is missing or malformed; the loaded ones are kept.
        """
        cfg = self.config
        passwords = PasswordFile.load(cfg.password_file) if cfg.password_file else None
        acl = AclFile.load(cfg.acl_file) if cfg.acl_file else None
        self.passwords, self.acl = passwords, acl
        authenticators: list[Authenticator] = [*self._authenticators]
        if authenticators and passwords is not None:
            authenticators.insert(0, PasswordFileAuthenticator(passwords))
        self.authenticator = None
        if authenticators:
            self.authenticator = AuthChain(authenticators, (), allow_anonymous=cfg.allow_anonymous)
        self.authorizer = None
        if self._authorizers:
            self.authorizer = AuthChain(
                (), self._authorizers, allow_anonymous=False, cache_ttl=cfg.auth_cache_ttl
            )
        self.read_acl = acl if acl is None or self.authorizer is None else DeliveryAcl(acl)
        methods: dict[str, AuthMethodFactory] = {}
        if passwords is not None:
            methods[ScramSha256.name] = ScramSha256(passwords.scram)
        methods.update(self._auth_methods)
        self.auth_methods = methods

    def reload_tls(self) -> None:
        """Reload the TLS listeners' certificate, key and CA files (SIGHUP does this).

        New handshakes use the new certificates; open connections stay up.

        Raises:
            ConfigError: a file is missing or malformed; the loaded certificates are kept.
        """
        reload_certificates(self.config, self.tls_contexts)

    def list_sessions(self) -> list[SessionInfo]:
        """A snapshot of every session, connected or not."""
        return [
            SessionInfo(
                s.client_id,
                s.conn is not None,
                s.version,
                s.conn.peer if s.conn is not None else None,
                {f: o.qos for f, o in s.subscriptions.items()},
                len(s.inflight),
                len(s.queue),
                s.dropped,
                s.expiry_interval,
            )
            for s in self.sessions.values()
        ]

    def list_subscriptions(self) -> list[tuple[str, str, int]]:
        """Every subscription as (client id, topic filter, granted QoS)."""
        return [(s.client_id, f, o.qos) for f, s, o in self.index.filters()]

    def disconnect_client(
        self, client_id: str, reason: ReasonCode = ReasonCode.ADMINISTRATIVE_ACTION
    ) -> bool:
        """Disconnect a connected client (MQTT 5 clients are told ``reason``)."""
        session = self.sessions.get(client_id)
        if session is None or session.conn is None:
            return False
        session.conn.disconnect(reason)
        return True

    # -- used by connections and handlers -------------------------------------------------------

    def schedule_flush(self, conn: Connection) -> None:
        """Flush ``conn`` at the end of this event loop iteration (one write per batch)."""
        self._dirty.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty = self._dirty
        self._dirty = []
        for conn in dirty:
            conn.flush()

    def connection_opened(self, conn: Connection) -> None:
        """A socket was accepted: admit it under the per-address limits, or close it now."""
        cfg = self.config
        if self.ip_limits is not None and not self._admit(conn, self.ip_limits):
            return
        self.connections.add(conn)
        self.stats.connections_total += 1
        if cfg.message_rate_limit or cfg.byte_rate_limit:
            conn.limiter = ClientLimiter(
                message_rate=cfg.message_rate_limit,
                byte_rate=cfg.byte_rate_limit,
                now=self.loop.time(),
            )

    def _admit(self, conn: Connection, ip_limits: IpLimits) -> bool:
        transport = conn.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if not isinstance(peer, tuple) or not peer:
            return True  # not an IP socket (e.g. a Unix socket): nothing to count by
        ip = str(peer[0])
        now = self.loop.time()
        refusal = ip_limits.admit(ip, now)
        if refusal is None:
            conn.source_ip = ip
            return True
        # Closed before CONNECT, so even an MQTT 5 client cannot be told 0x9F; a flood of these
        # would flood the log too, hence one WARNING a minute per address.
        self.stats.connections_refused += 1
        if ip_limits.should_warn(ip, now):
            log.warning("refusing connections from %s: %s (logged once a minute)", ip, refusal)
        conn.close_now()
        return False

    def connection_closed(self, conn: Connection, exc: Exception | None) -> None:
        """A socket is gone, for whatever reason."""
        self.connections.discard(conn)
        if conn.source_ip is not None and self.ip_limits is not None:
            self.ip_limits.release(conn.source_ip)
            conn.source_ip = None
        self._detach(conn, "connection lost" if exc is None else f"connection lost: {exc}")

    def client_connected(self, conn: Connection, present: bool = False) -> None:
        """CONNACK 0 was sent, with Session Present ``present``."""
        self.connected_count += 1
        log.debug("client %r connected from %s (v%d)", conn.client_id, conn.peer, conn.version)
        if self.hooks.observed(HookEvent.CLIENT_CONNECTED):
            self.hooks.notify(
                HookEvent.CLIENT_CONNECTED, conn.client_id, conn.peer, conn.version, present
            )

    def open_session(
        self, conn: Connection, client_id: str, clean_start: bool, version: int
    ) -> tuple[Session, bool]:
        """Bind ``conn`` to the session of ``client_id``: take over, resume or create it."""
        existing = self.sessions.get(client_id)
        if existing is not None and existing.conn is not None:
            old = existing.conn
            log.info("client %r from %s takes over from %s", client_id, conn.peer, old.peer)
            self._detach(old, "session taken over", ending=clean_start)
            old.disconnect(ReasonCode.SESSION_TAKEN_OVER)  # [MQTT-3.1.4-3]
        present = False
        if existing is not None:
            if existing.expiry_handle is not None:
                existing.expiry_handle.cancel()
                existing.expiry_handle = None
            if clean_start or existing.client_id not in self.sessions:
                self._end_session(existing)
            else:
                if existing.will_handle is not None:
                    # [MQTT-3.1.3-9]: reconnecting before the will delay cancels the will.
                    existing.will_handle.cancel()
                    existing.will_handle = None
                    existing.will = None
                present = True
        if present:
            assert existing is not None
            session = existing
            session.version = version
        else:
            session = self.new_session(client_id, version)
        session.conn = conn
        session.disconnected_at = None
        conn.session = session
        return session, present

    def new_session(self, client_id: str, version: int) -> Session:
        """Create and register an empty session."""
        session = Session(
            client_id,
            version,
            max_queued=self.config.max_queued_messages,
            queue_qos0=self.config.queue_qos0_messages,
            on_drop=self._session_dropped,
            pressure=self.pressure,
        )
        session.max_queued_bytes = self.config.max_queued_bytes
        session.created_at = self.loop.time()
        self.sessions[client_id] = session
        return session

    def session_connected(self, session: Session) -> None:
        """CONNECT settled the session's expiry: keep it in the store if it is persistent."""
        durable = self.durable
        if durable is None:
            return
        if session.expiry_interval:
            session.durable = durable
            durable.save_session(session)
        elif session.durable is not None:
            durable.delete_session(session)
            session.durable = None

    def schedule_expiry(self, session: Session, disconnected_at: float | None) -> None:
        """Start the expiry timer of an offline session (``disconnected_at`` is wall-clock)."""
        if session.expiry_interval == SESSION_NEVER_EXPIRES:
            return
        elapsed = max(0.0, time.time() - disconnected_at) if disconnected_at else 0.0
        session.expiry_handle = self.loop.call_later(
            max(0.0, session.expiry_interval - elapsed), self._expire_session, session
        )

    def _detach(self, conn: Connection, reason: str, *, ending: bool = False) -> None:
        session = conn.session
        if session is None or session.conn is not conn:
            return
        session.conn = None
        session.disconnected_at = self.loop.time()
        if session.blocked:
            session.release()  # an offline session queues or drops; it never holds publishers
        self.connected_count -= 1
        conn.aliases.clear()
        if self.hooks.observed(HookEvent.CLIENT_DISCONNECTED):
            self.hooks.notify(HookEvent.CLIENT_DISCONNECTED, conn.client_id, conn.peer, reason)
        if conn.will_pending and session.will is not None:
            self._schedule_will(session)
        else:
            session.will = None
        for msg in session.take_shared_unacked():
            self._redeliver_shared(session, msg)
        if ending or session.expiry_interval == 0:
            self._end_session(session)
            return
        self.schedule_expiry(session, None)
        if session.durable is not None:
            session.durable.save_session(session)

    def _redeliver_shared(self, session: Session, msg: Outgoing) -> None:
        may_read = reader(self.read_acl, msg.template.topic)  # the other member must be allowed too
        if not deliver_shared(
            msg.share, msg.template, msg.qos, msg.expires_at, exclude=session, may_read=may_read
        ):
            session.enqueue(msg)  # nobody else can take it: keep it for this member

    def _schedule_will(self, session: Session) -> None:
        will = session.will
        assert will is not None
        delay = will.properties.will_delay_interval or 0
        if delay <= 0 or session.expiry_interval == 0:
            session.will = None
            self._publish_will(session.client_id, will)
        else:
            # [MQTT-3.1.2-8]: published after the delay or when the session ends, if earlier.
            delay = min(delay, session.expiry_interval)
            session.will_due = time.time() + delay
            session.will_handle = self.loop.call_later(delay, self.fire_will, session)

    def fire_will(self, session: Session) -> None:
        """Publish a session's delayed will now (its delay ran out, or the session ended)."""
        session.will_handle = None
        session.will_due = None
        will, session.will = session.will, None
        if will is not None and session.conn is None:
            self._publish_will(session.client_id, will)
            if session.durable is not None and self.sessions.get(session.client_id) is session:
                session.durable.save_session(session)

    def _publish_will(self, client_id: str, will: Will) -> None:
        props = will.properties
        if props.will_delay_interval is not None:
            props = props.replace(will_delay_interval=None)
        log.debug("publishing the will of %r on %r", client_id, will.topic)
        self.publish_message(will.topic, will.payload, will.qos, will.retain, props, client_id)

    def _expire_session(self, session: Session) -> None:
        session.expiry_handle = None
        if session.conn is None and self.sessions.get(session.client_id) is session:
            log.debug("session %r expired", session.client_id)
            self._end_session(session)

    def _end_session(self, session: Session) -> None:
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        self.index.remove_all(session)
        session.subscriptions.clear()
        if session.expiry_handle is not None:
            session.expiry_handle.cancel()
            session.expiry_handle = None
        if session.will_handle is not None:
            session.will_handle.cancel()
            self.fire_will(session)
        session.queue.clear()
        session.queued_bytes = 0
        session.inflight.clear()
        session.spilled = 0
        if session.durable is not None:
            session.durable.delete_session(session)
            session.durable = None

    def subscribe(self, session: Session, topic_filter: str, opts: SubOptions) -> bool:
        """Add or replace a subscription; True if it is new."""
        session.subscriptions[topic_filter] = opts
        if session.durable is not None:
            session.durable.subscribed(session, topic_filter, opts)
        return self.index.add(session, topic_filter, opts)

    def unsubscribe(self, session: Session, topic_filter: str) -> bool:
        """Remove a subscription; True if it existed."""
        session.subscriptions.pop(topic_filter, None)
        if session.durable is not None:
            session.durable.unsubscribed(session, topic_filter)
        return self.index.remove(session, topic_filter)

    def publish_message(
        self,
        topic: str,
        payload: bytes | bytearray | memoryview,
        qos: int,
        retain: bool,
        props: Properties,
        origin: str,
    ) -> int:
        """Store (if retained) and route a message; returns the number of deliveries."""
        expiry = props.message_expiry_interval
        expires_at = None if expiry is None else self.loop.time() + expiry
        template = PublishTemplate(topic, payload, props)
        if retain:
            if not self.retained.set(topic, template, qos, expires_at):
                log.info("retained message on %r refused by the retained message caps", topic)
            elif self.durable is not None:
                self.durable.retained(topic, template, qos, expires_at)
        return route(self.index, topic, template, qos, retain, expires_at, origin, self.read_acl)

    def send_ack(self, conn: Connection, data: bytes) -> None:
        """Send a PUBACK/PUBREC, after the store commit it depends on in ``ack`` durability."""
        if self.durable is not None:
            self.durable.ack(conn, data)
        else:
            conn.write(data)

    def send_retained(self, session: Session, topic_filter: str, opts: SubOptions) -> None:
        """Deliver the retained messages matching a new subscription [MQTT-3.3.1-9]."""
        sub_ids = (opts.sub_id,) if opts.sub_id and session.version == 5 else ()
        acl = self.read_acl
        for msg in self.retained.matching(topic_filter, self.loop.time()):
            if acl is not None and not acl.check(
                session.client_id, session.username, msg.template.topic, Access.READ
            ):
                continue
            qos = msg.qos if msg.qos < opts.qos else opts.qos
            session.deliver(msg.template, qos, True, sub_ids, msg.expires_at)

    def message_dropped(
        self, session: Session | None, template: PublishTemplate | None, reason: str
    ) -> None:
        """Count a message dropped for one receiver (or on ingress when ``session`` is None)."""
        self.stats.messages_dropped += 1
        if self.hooks.observed(HookEvent.MESSAGE_DROPPED):
            self.hooks.notify(
                HookEvent.MESSAGE_DROPPED,
                session.client_id if session is not None else "",
                template.topic if template is not None else "",
                reason,
            )

    def _session_dropped(self, session: Session, msg: Outgoing, reason: str) -> None:
        self.message_dropped(session, msg.template, reason)

    def message_delivered(self, session: Session) -> None:
        """A QoS 1/2 delivery to ``session`` completed."""
        if self.hooks.observed(HookEvent.MESSAGE_DELIVERED):
            self.hooks.notify(HookEvent.MESSAGE_DELIVERED, session.client_id)

    # -- timers ---------------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Enforce connect timeouts and keep alive [MQTT-3.1.2-22] once a second."""
        loop = self.loop
        now = loop.time()
        timeout = self.config.connect_timeout
        if self.ip_limits is not None:
            self.ip_limits.prune(now)
        for conn in list(self.connections):
            if conn.state == CONNECTING:
                if now - conn.created_at > timeout:
                    log.info("closing %s: no CONNECT within %.0f s", conn.peer, timeout)
                    conn.close_now()
            elif conn.paused_at and now - conn.paused_at > BACKPRESSURE_PATIENCE:
                # The subscribers holding this publisher made no progress: cut them loose so
                # one stuck client never stalls the others; their queues now drop instead.
                for session in list(conn.waiting_on):
                    session.stalled = True
                    if conn in session.blocked:
                        session.blocked.remove(conn)
                    conn.unblock(session)
            elif (
                conn.state != CLOSED
                and conn.keepalive
                and conn.throttle_handle is None  # not reading is our doing, not the client's
                and not conn.congested
                and now - conn.last_rx > conn.keepalive * 1.5
            ):
                log.info("closing %r (%s): keep alive timeout", conn.client_id, conn.peer)
                conn.disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)
        self._sweep_handle = loop.call_later(SWEEP_INTERVAL, self._sweep)
