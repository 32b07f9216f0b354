"""The sans-IO client side of an MQTT 3.1 / 3.1.1 / 5.0 connection.

``ClientProtocol`` turns calls into bytes to write (``connect()``, ``publish()``,
``subscribe()``...) and received bytes into events (``receive_data()``); the bytes it owes the
server in answer to received packets (acknowledgements, resends, PINGREQ) wait in
``data_to_send()``. Time comes in as ``now``: the IO layer reports writes with ``note_sent(now)``
and asks ``next_timeout()`` / ``on_timer(now)`` for keep alive.

Session state (outgoing QoS 1/2 in flight, incoming QoS 2 packet ids awaiting PUBREL) survives
``connection_lost()`` so that a reconnect resumes it:

* Session Present = 1: unacknowledged PUBLISH packets go out again with DUP set and PUBREL
  packets are repeated, in their original order [MQTT-4.4.0-1].
* Session Present = 0: the server forgot the session. The spec has the client discard its state
  [MQTT-3.2.2-5]; we discard the *protocol* state but republish our own unacknowledged messages
  as new ones (DUP clear) so a broker restart does not lose them (at least once for QoS 1; a QoS 2
  message whose PUBREC already arrived was accepted by the server and counts as delivered).

Flow control: at most ``min(max_inflight, server Receive Maximum)`` QoS 1/2 PUBLISH packets are
unacknowledged at once [MQTT-3.3.4-7]; further ones are held (``publish`` returns no bytes) and
released into ``data_to_send()`` as acknowledgements arrive. Incoming, more unacknowledged QoS 1/2
messages than the Receive Maximum we announced is a Receive Maximum exceeded error [MQTT-3.3.4-9].

Manual acknowledgement (``manual_ack=True``): the PUBACK / PUBREC of an incoming message is
produced only by ``ack(packet_id)``. A QoS 2 message not yet acknowledged when the connection
drops is forgotten, so the server's resend is delivered again rather than deduplicated.

Durable sessions (``durable=True``): the IO layer keeps the session in a store, and what goes on
the wire waits for it (see ``session.py``): a QoS 1/2 PUBLISH for ``mark_stored``, a PUBREL for
``pubrel_stored`` (after the ``PubRecReceived`` event), the PUBREC of a new incoming QoS 2 message
(reported by ``MessageReceived`` as usual) for ``incoming_stored``, its PUBCOMP for
``incoming_released`` (after ``PubRelReceived``). ``restore()`` loads a stored session before the
first ``connect()``.

Enhanced authentication (MQTT 5, section 4.12): with an Authentication Method among the CONNECT
properties, ``connect(authentication_data=...)`` starts the exchange, the server's AUTH packets are
checked (method, reason code, state) and reported as ``AuthReceived``, ``auth_continue()`` answers
them, and ``reauthenticate()`` starts a re-authentication once connected.

Why past ~600 lines: this is the whole public surface of a client connection, one documented
method per verb (durable-session and enhanced-authentication ones included) plus the per-state
packet table; the QoS state machine lives in ``session.py``,
keep alive in ``keepalive.py`` and topic aliases in ``aliases.py``.

Imports only from ``codec``, ``errors`` and sibling ``protocol`` modules; no IO, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, Final

from wrenmq.codec.decode import MAX_PACKET_SIZE, StreamDecoder
from wrenmq.codec.encode import PublishTemplate, encode
from wrenmq.codec.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from wrenmq.codec.properties import NO_PROPERTIES, Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.topics import (
    SHARE_PREFIX,
    is_wildcard,
    validate_topic_filter,
    validate_topic_name,
)
from wrenmq.errors import LocalProtocolError, MQTTError, RemoteProtocolError
from wrenmq.protocol.aliases import IncomingAliases, OutgoingAliases
from wrenmq.protocol.events import (
    AuthReceived,
    Connected,
    ConnectionRefused,
    Disconnected,
    Event,
    MessageReceived,
    PongReceived,
    PublishAcked,
    PubRecReceived,
    PubRelReceived,
    SubscribeAcked,
    UnsubscribeAcked,
)
from wrenmq.protocol.keepalive import KeepAlive, KeepAliveAction
from wrenmq.protocol.session import ACKED, AWAIT_COMP, ClientSession, Outgoing

__all__ = ["ClientProtocol", "ConnectionState"]

MAX_RECEIVE: Final = 0xFFFF
MAX_SUBSCRIPTION_ID: Final = 268_435_455
_REASON_STRING_MAX = 200


class ConnectionState(enum.IntEnum):
    """Where a client connection stands."""

    DISCONNECTED = 0  # no network connection
    CONNECTING = 1  # CONNECT written, waiting for CONNACK
    CONNECTED = 2
    CLOSING = 3  # DISCONNECT sent or received, or the server broke the protocol


# Kinds of pending requests other than PUBLISH.
_SUBSCRIBE, _UNSUBSCRIBE = 0, 1


def _local(check: Callable[[str], None], value: str) -> None:
    """Run a codec validator on a string this side produced: its errors are ours."""
    try:
        check(value)
    except RemoteProtocolError as exc:
        raise LocalProtocolError(exc.reason_code, exc.message) from None


class ClientProtocol:
    """A client connection as a state machine over bytes.

    Args:
        version: protocol level: 5 (MQTT 5.0), 4 (3.1.1) or 3 (3.1).
        client_id: the Client Identifier [MQTT-3.1.3-3]; empty asks an MQTT 5 server to assign
            one (Assigned Client Identifier), which is then used for every reconnect.
        clean_start: Clean Start / Clean Session flag of the *first* CONNECT; later CONNECTs ask
            to resume the session whenever one can exist (see ``connect``).
        keepalive: Keep Alive in seconds [MQTT-3.1.2-10]; 0 disables it. A Server Keep Alive in
            CONNACK replaces it [MQTT-3.2.2-21].
        ping_timeout: seconds to wait for PINGRESP before declaring the connection dead;
            default: the keep alive.
        username: User Name, or ``None``.
        password: Password, or ``None``.
        will: the Will Message, or ``None``.
        session_expiry: MQTT 5 Session Expiry Interval in seconds (0: the session ends with the
            connection; 0xFFFFFFFF: never).
        receive_maximum: MQTT 5 Receive Maximum: how many unacknowledged QoS 1/2 messages the
            server may send us at once.
        maximum_packet_size: MQTT 5 Maximum Packet Size we accept; ``None``: no limit.
        topic_alias_maximum: MQTT 5 Topic Alias Maximum we accept from the server.
        max_inflight: our own cap on unacknowledged outgoing QoS 1/2 messages (the server's
            Receive Maximum caps it further).
        manual_ack: acknowledge incoming QoS 1/2 only when ``ack()`` is called.
        request_response_information: MQTT 5: ask the server for Response Information.
        request_problem_information: MQTT 5: whether the server may send Reason Strings and
            User Properties on failures.
        connect_properties: further MQTT 5 CONNECT properties (user properties, authentication
            method and data); the arguments above override what they also set.
        durable: the IO layer keeps the session in a store; outgoing QoS 1/2 messages, PUBREL,
            and the PUBREC and PUBCOMP of incoming QoS 2 messages wait for it (module docstring).
    """

    def __init__(
        self,
        *,
        version: int = 5,
        client_id: str = "",
        clean_start: bool = True,
        keepalive: int = 60,
        ping_timeout: float | None = None,
        username: str | None = None,
        password: bytes | None = None,
        will: Will | None = None,
        session_expiry: int = 0,
        receive_maximum: int = MAX_RECEIVE,
        maximum_packet_size: int | None = None,
        topic_alias_maximum: int = 0,
        max_inflight: int = MAX_RECEIVE,
        manual_ack: bool = False,
        request_response_information: bool = False,
        request_problem_information: bool = True,
        connect_properties: Properties = NO_PROPERTIES,
        durable: bool = False,
    ) -> None:
        if version not in (3, 4, 5):
            raise LocalProtocolError(
                ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, f"protocol level {version}"
            )
        if not 0 <= keepalive <= 0xFFFF:
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, f"keep alive {keepalive}")
        if not 1 <= receive_maximum <= MAX_RECEIVE or max_inflight < 1:
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "receive maximum out of range")
        if not 0 <= topic_alias_maximum <= 0xFFFF:
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "topic alias maximum out of range")
        if will is not None:
            _local(validate_topic_name, will.topic)
        self.version = version
        self.client_id = client_id
        self.clean_start = clean_start
        self.keepalive = keepalive
        self.ping_timeout = ping_timeout
        self.username = username
        self.password = password
        self.will = will
        self.session_expiry = session_expiry if version == 5 else 0
        self.receive_maximum = receive_maximum if version == 5 else MAX_RECEIVE
        self.maximum_packet_size = maximum_packet_size if version == 5 else None
        self.topic_alias_maximum = topic_alias_maximum if version == 5 else 0
        self.max_inflight = max_inflight
        self.manual_ack = manual_ack
        self.request_response_information = request_response_information
        self.request_problem_information = request_problem_information
        self.connect_properties = connect_properties
        self.durable = durable
        #: The MQTT 5 Authentication Method of enhanced authentication, or ``None``.
        self.authentication_method = (
            connect_properties.authentication_method if version == 5 else None
        )
        self._reauthenticating = False

        self.state = ConnectionState.DISCONNECTED
        #: Counts network connections; a message's acknowledgement is only valid in its epoch.
        self.epoch = 0
        self._connects = 0
        self._sent_clean_start = clean_start
        self._out: list[bytes] = []
        self.session = ClientSession(manual_ack=manual_ack, durable=durable)
        # Connection state: reset by connect().
        self._requests: dict[int, tuple[int, int]] = {}  # packet id -> (kind, filter count)
        self._decoder = StreamDecoder(version=version)
        self._in_aliases = IncomingAliases(self.topic_alias_maximum)
        self._out_aliases = OutgoingAliases(0)
        self._keepalive = KeepAlive(keepalive, ping_timeout)
        self._reset_server_limits()

    # -- what the server told us ----------------------------------------------------------------

    def _reset_server_limits(self) -> None:
        self.server_receive_maximum = MAX_RECEIVE
        self.server_maximum_packet_size = MAX_PACKET_SIZE
        self.server_topic_alias_maximum = 0
        self.server_maximum_qos = 2
        self.retain_available = True
        self.wildcard_subscription_available = True
        self.subscription_identifier_available = self.version == 5
        self.shared_subscription_available = True
        self.response_information: str | None = None

    @property
    def inflight(self) -> int:
        """Outgoing QoS 1/2 messages not yet fully acknowledged (held ones included)."""
        return self.session.inflight

    @property
    def is_connected(self) -> bool:
        """True between a successful CONNACK and the end of the connection."""
        return self.state == ConnectionState.CONNECTED

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes owed to the server in answer to received packets."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return b"".join(out)

    # -- connection lifecycle -------------------------------------------------------------------

    def connect(
        self, *, clean_start: bool | None = None, authentication_data: bytes | None = None
    ) -> bytes:
        """Start a new network connection: return the CONNECT packet.

        Args:
            clean_start: override the Clean Start flag. By default the first CONNECT uses the
                constructor's value and reconnects ask to resume the session whenever the server
                may still hold one (MQTT 5 with a Session Expiry, or 3.x without Clean Session).
            authentication_data: MQTT 5 Authentication Data for this CONNECT (enhanced
                authentication: each connection starts a new exchange).
        """
        if self.state != ConnectionState.DISCONNECTED:
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "already connected")
        if clean_start is None:
            if not self._connects:
                clean_start = self.clean_start
            elif self.version == 5:
                clean_start = self.session_expiry == 0
            else:
                clean_start = self.clean_start
        if self.version < 5 and not self.client_id and not clean_start:
            raise LocalProtocolError(
                ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "an empty client id needs clean session"
            )  # [MQTT-3.1.3-7]
        packet = Connect(
            client_id=self.client_id,
            protocol_level=self.version,
            clean_start=clean_start,
            keepalive=self.keepalive,
            username=self.username,
            password=self.password,
            will=self.will,
            properties=self._connect_properties(authentication_data),
        )
        data = encode(packet, self.version)
        self._connects += 1
        self._sent_clean_start = clean_start
        self._start_connection()
        self.state = ConnectionState.CONNECTING
        return data

    def _connect_properties(self, authentication_data: bytes | None = None) -> Properties:
        if self.version != 5:
            return NO_PROPERTIES
        fields: dict[str, Any] = {}
        if authentication_data is not None:
            if self.authentication_method is None:
                raise LocalProtocolError(
                    ReasonCode.PROTOCOL_ERROR, "authentication data without a method"
                )  # [MQTT-3.1.2-28]
            fields["authentication_data"] = authentication_data
        if self.session_expiry:
            fields["session_expiry_interval"] = self.session_expiry
        if self.receive_maximum != MAX_RECEIVE:
            fields["receive_maximum"] = self.receive_maximum
        if self.maximum_packet_size is not None:
            fields["maximum_packet_size"] = self.maximum_packet_size
        if self.topic_alias_maximum:
            fields["topic_alias_maximum"] = self.topic_alias_maximum
        if self.request_response_information:
            fields["request_response_information"] = 1
        if not self.request_problem_information:
            fields["request_problem_information"] = 0
        if not fields:
            return self.connect_properties
        return self.connect_properties.replace(**fields)

    def _start_connection(self) -> None:
        self._out = []
        self._requests = {}
        self._reauthenticating = False
        self._decoder = StreamDecoder(
            version=self.version, max_packet_size=self.maximum_packet_size or MAX_PACKET_SIZE
        )
        self._in_aliases = IncomingAliases(self.topic_alias_maximum)
        self._out_aliases = OutgoingAliases(0)
        self._keepalive = KeepAlive(self.keepalive, self.ping_timeout)
        self._reset_server_limits()

    def connection_lost(self) -> list[int]:
        """The network connection is gone; keep the session, drop the connection state.

        Returns:
            The packet ids of SUBSCRIBE / UNSUBSCRIBE requests that will never be answered.
        """
        abandoned = list(self._requests)
        self._requests = {}
        self._out = []
        self.session.connection_lost()
        self.state = ConnectionState.DISCONNECTED
        self.epoch += 1
        return abandoned

    def disconnect(
        self,
        reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION,
        properties: Properties = NO_PROPERTIES,
    ) -> bytes:
        """End the connection politely: return the DISCONNECT packet (nothing if not connected).

        Raises:
            LocalProtocolError: a Session Expiry Interval in DISCONNECT when CONNECT had none
                [MQTT-3.14.2-2].
        """
        if self.state != ConnectionState.CONNECTED:
            self.state = (
                ConnectionState.CLOSING
                if self.state != ConnectionState.DISCONNECTED
                else self.state
            )
            return b""
        if properties.session_expiry_interval and not self.session_expiry:
            raise LocalProtocolError(
                ReasonCode.PROTOCOL_ERROR,
                "cannot set a session expiry on DISCONNECT after CONNECT had none",
            )
        self.state = ConnectionState.CLOSING
        return encode(Disconnect(reason_code, properties), self.version)

    # -- keep alive -----------------------------------------------------------------------------

    def note_sent(self, now: float) -> None:
        """Tell the keep alive that bytes were written at ``now``."""
        self._keepalive.sent(now)

    def next_timeout(self, now: float) -> float | None:
        """The time at which ``on_timer`` should next be called; ``None``: no timer needed."""
        if self.state != ConnectionState.CONNECTED:
            return None
        return self._keepalive.deadline()

    def on_timer(self, now: float) -> bytes:
        """Run the keep alive at ``now``: return a PINGREQ when one is due.

        Raises:
            RemoteProtocolError: Keep Alive timeout when a PINGREQ went unanswered too long; the
                connection should be closed (after ``disconnect(exc.reason_code)`` for MQTT 5).
        """
        if self.state != ConnectionState.CONNECTED:
            return b""
        action = self._keepalive.poll(now)
        if action is KeepAliveAction.EXPIRED:
            raise RemoteProtocolError(ReasonCode.KEEP_ALIVE_TIMEOUT, "no PINGRESP in time")
        if action is KeepAliveAction.PING:
            return self.ping(now)
        return b""

    def ping(self, now: float) -> bytes:
        """Return a PINGREQ written at ``now``."""
        self._require_connected()
        self._keepalive.ping_sent(now)
        return encode(PingReq(), self.version)

    # -- outgoing requests ----------------------------------------------------------------------

    def _require_connected(self) -> None:
        if self.state != ConnectionState.CONNECTED:
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "not connected")

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.server_maximum_packet_size:
            raise LocalProtocolError(
                ReasonCode.PACKET_TOO_LARGE,
                f"packet of {len(data)} bytes exceeds the server's maximum packet size "
                f"{self.server_maximum_packet_size}",
            )  # [MQTT-3.1.2-24]

    def _allocate_id(self) -> int:
        return self.session.allocate_id(self._requests)

    def publish(
        self,
        topic: str,
        payload: bytes | bytearray | memoryview = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
        *,
        tag: int = 0,
    ) -> tuple[int, bytes]:
        """Publish an application message.

        In a durable session a QoS 1/2 message is held until ``mark_stored(packet_id, tag)``.

        Returns:
            ``(packet_id, data)``: ``packet_id`` is 0 for QoS 0; ``data`` is empty when the
            message is held back by the server's Receive Maximum (it is released later through
            ``data_to_send()``).

        Raises:
            LocalProtocolError: not connected, invalid topic, QoS above the server's Maximum QoS
                [MQTT-3.2.2-11], retain when Retain Available is 0 [MQTT-3.2.2-14], a packet
                larger than the server's Maximum Packet Size, or properties a client may not set.
        """
        self._require_connected()
        _local(validate_topic_name, topic)
        if qos not in (0, 1, 2):
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, f"QoS {qos}")
        if qos > self.server_maximum_qos:
            raise LocalProtocolError(
                ReasonCode.QOS_NOT_SUPPORTED,
                f"QoS {qos} is above the server's maximum {self.server_maximum_qos}",
            )
        if retain and not self.retain_available:
            raise LocalProtocolError(
                ReasonCode.RETAIN_NOT_SUPPORTED, "the server does not support retain"
            )
        if properties is not NO_PROPERTIES and (
            properties.topic_alias is not None or properties.subscription_identifiers
        ):
            raise LocalProtocolError(
                ReasonCode.PROTOCOL_ERROR,
                "topic aliases are managed by the client and subscription identifiers are "
                "for the server to send",
            )  # [MQTT-3.3.4-6]
        if not isinstance(payload, bytes):
            payload = bytes(payload)  # the caller may reuse its buffer
        if not qos:
            packet = Publish(topic, payload, 0, retain, False, 0, properties)
            data = encode(packet, self.version)
            self._check_size(data)
            return 0, self._aliased(packet, data)
        pid = self._allocate_id()
        packet = Publish(topic, payload, qos, retain, False, pid, properties)
        data = encode(packet, self.version)
        self._check_size(data)
        entry = Outgoing(packet, data, stored=not self.durable, tag=tag)
        if self.session.add(entry):
            return pid, self._encode_entry(entry)
        return pid, b""

    def _encode_entry(self, entry: Outgoing) -> bytes:
        """The bytes of an outgoing message about to be (re)sent."""
        if entry.sent_before:
            data = entry.data
            return bytes((data[0] | 0x08,)) + data[1:]  # DUP on a resend [MQTT-3.3.1-1]
        entry.sent_before = True
        return self._aliased(entry.publish, entry.data)

    def _aliased(self, packet: Publish, data: bytes) -> bytes:
        """Return ``data`` or, when the topic has a Topic Alias, the aliased encoding."""
        if not self._out_aliases.maximum:
            return data
        alias, known = self._out_aliases.assign(packet.topic)
        if alias is None:
            return data
        # The packet was validated when ``data`` was encoded; the template only re-frames it.
        out = bytes(
            PublishTemplate(packet.topic, packet.payload, packet.properties).for_receiver(
                self.version,
                packet.qos,
                packet.packet_id,
                retain=packet.retain,
                dup=packet.dup,
                topic_alias=alias,
                topic_alias_only=known,
            )
        )
        if len(out) > self.server_maximum_packet_size:
            if not known:
                self._out_aliases.forget(packet.topic)
            return data
        return out

    def _pump(self) -> None:
        """Release held messages while the send quota allows."""
        out = self._out
        for entry in self.session.releasable():
            out.append(self._encode_entry(entry))

    # -- durable sessions -----------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Changes whenever the server lost the session; tags incoming QoS 2 store writes."""
        return self.session.generation

    def restore(
        self,
        outgoing: Sequence[tuple[Publish, int, bool]],
        incoming_qos2: Sequence[int],
        next_packet_id: int,
    ) -> None:
        """Load a stored session (before connecting): replaces the session state.

        Args:
            outgoing: ``(publish, tag, pubrec_received)`` per unfinished QoS 1/2 message, in
                publishing order, each with its packet id; they count as sent before (DUP on a
                resend); those whose PUBREC arrived get their PUBREL repeated instead.
            incoming_qos2: ids of incoming QoS 2 messages delivered and not yet released.
            next_packet_id: where the packet id allocator resumes.
        """
        if self.state != ConnectionState.DISCONNECTED:
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "restore() while connected")
        session = ClientSession(manual_ack=self.manual_ack, durable=self.durable)
        for p, tag, released in outgoing:
            pid = p.packet_id
            if p.qos not in (1, 2) or not 0 < pid <= 0xFFFF:
                raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, f"cannot restore {p!r}")
            if released and p.qos == 2:
                entry = Outgoing(Publish(p.topic, b"", 2, packet_id=pid), b"", tag=tag)
                entry.state = AWAIT_COMP
            else:
                entry = Outgoing(p, encode(p, self.version), tag=tag)
            entry.sent_before = True
            session.outgoing[pid] = entry
        session.qos2_in = dict.fromkeys(incoming_qos2, ACKED)
        session.next_packet_id = next_packet_id
        self.session = session

    def mark_stored(self, packet_id: int, tag: int) -> bytes:
        """The store holds outgoing message ``packet_id``: return what may go out now."""
        if not self.session.mark_stored(packet_id, tag) or not self.is_connected:
            return b""
        return b"".join(self._encode_entry(entry) for entry in self.session.releasable())

    def pubrel_stored(self, packet_id: int, tag: int) -> bytes:
        """The store holds the PUBREC of outgoing message ``packet_id``: return its PUBREL."""
        pubrel = self.session.pubrel_stored(packet_id, tag)
        if pubrel is None or not self.is_connected:
            return b""
        return encode(pubrel, self.version)

    def incoming_stored(self, packet_id: int, generation: int) -> bytes:
        """The store holds incoming QoS 2 id ``packet_id``: return its PUBREC."""
        pubrec = self.session.incoming_stored(packet_id, generation)
        if pubrec is None or not self.is_connected:
            return b""
        return encode(pubrec, self.version)

    def incoming_released(self, packet_id: int, generation: int) -> bytes:
        """The store forgot incoming QoS 2 id ``packet_id``: return its PUBCOMP."""
        pubcomp = self.session.incoming_released(packet_id, generation)
        if pubcomp is None or not self.is_connected:
            return b""
        return encode(pubcomp, self.version)

    def subscribe(
        self, subscriptions: Sequence[Subscription], properties: Properties = NO_PROPERTIES
    ) -> tuple[int, bytes]:
        """Subscribe to one or more topic filters; returns ``(packet_id, data)``.

        Raises:
            LocalProtocolError: not connected, an invalid filter, or a feature the server said
                it lacks (wildcards, shared subscriptions, subscription identifiers).
        """
        self._require_connected()
        if not subscriptions:
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "no topic filter")
        for sub in subscriptions:
            self._check_subscription(sub)
        sub_ids = properties.subscription_identifiers
        if sub_ids:
            if not self.subscription_identifier_available:
                raise LocalProtocolError(
                    ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                    "the server does not support subscription identifiers",
                )
            if len(sub_ids) > 1 or not 0 < sub_ids[0] <= MAX_SUBSCRIPTION_ID:
                raise LocalProtocolError(
                    ReasonCode.PROTOCOL_ERROR, f"subscription identifier {sub_ids}"
                )
        pid = self._allocate_id()
        data = encode(Subscribe(pid, list(subscriptions), properties), self.version)
        self._check_size(data)
        self._requests[pid] = (_SUBSCRIBE, len(subscriptions))
        return pid, data

    def _check_subscription(self, sub: Subscription) -> None:
        topic_filter = sub.topic_filter
        _local(validate_topic_filter, topic_filter)
        if sub.qos not in (0, 1, 2) or sub.retain_handling not in (0, 1, 2):
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, f"subscription options {sub}")
        shared = topic_filter.startswith(SHARE_PREFIX)
        if shared:
            if not self.shared_subscription_available:
                raise LocalProtocolError(
                    ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
                    "the server does not support shared subscriptions",
                )
            if sub.no_local and self.version == 5:
                raise LocalProtocolError(
                    ReasonCode.PROTOCOL_ERROR, "no local on a shared subscription"
                )  # [MQTT-3.8.3-4]
        if is_wildcard(topic_filter) and not self.wildcard_subscription_available:
            raise LocalProtocolError(
                ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
                "the server does not support wildcard subscriptions",
            )

    def unsubscribe(
        self, topic_filters: Sequence[str], properties: Properties = NO_PROPERTIES
    ) -> tuple[int, bytes]:
        """Unsubscribe from topic filters; returns ``(packet_id, data)``."""
        self._require_connected()
        if not topic_filters:
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "no topic filter")
        for topic_filter in topic_filters:
            _local(validate_topic_filter, topic_filter)
        pid = self._allocate_id()
        data = encode(Unsubscribe(pid, list(topic_filters), properties), self.version)
        self._check_size(data)
        self._requests[pid] = (_UNSUBSCRIBE, len(topic_filters))
        return pid, data

    def _auth(self, reason_code: ReasonCode, data: bytes | None) -> bytes:
        method = self.authentication_method
        if method is None:
            raise LocalProtocolError(
                ReasonCode.PROTOCOL_ERROR, "AUTH needs an authentication method in CONNECT"
            )  # [MQTT-4.12.0-7]
        props = Properties(authentication_method=method, authentication_data=data)
        return encode(Auth(reason_code, props), self.version)

    def auth_continue(self, data: bytes | None) -> bytes:
        """Answer the server's AUTH (Continue authentication) with ``data``: an AUTH 0x18."""
        if not (
            self.state == ConnectionState.CONNECTING
            or (self.state == ConnectionState.CONNECTED and self._reauthenticating)
        ):
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "no authentication in progress")
        return self._auth(ReasonCode.CONTINUE_AUTHENTICATION, data)

    def reauthenticate(self, data: bytes | None) -> bytes:
        """Start a re-authentication with ``data``: an AUTH 0x19 [MQTT-4.12.1-1].

        The server answers with AUTH (Continue authentication, then Success) or, if it fails,
        DISCONNECT [MQTT-4.12.1-2].
        """
        self._require_connected()
        if self._reauthenticating:
            raise LocalProtocolError(ReasonCode.PROTOCOL_ERROR, "re-authentication in progress")
        data_out = self._auth(ReasonCode.RE_AUTHENTICATE, data)
        self._reauthenticating = True
        return data_out

    @property
    def reauthenticating(self) -> bool:
        """Whether a re-authentication started and the server has not confirmed it yet."""
        return self._reauthenticating

    def ack(self, packet_id: int, reason_code: ReasonCode = ReasonCode.SUCCESS) -> bytes:
        """Acknowledge an incoming QoS 1/2 message in manual-ack mode.

        Returns the PUBACK or PUBREC, or nothing when ``packet_id`` awaits no acknowledgement
        (QoS 0, already acknowledged, or received on an earlier connection). A failure
        ``reason_code`` (MQTT 5) refuses the message.
        """
        if self.state != ConnectionState.CONNECTED:
            return b""
        packet = self.session.ack(packet_id, reason_code)
        return b"" if packet is None else encode(packet, self.version)

    # -- incoming -------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed received bytes; return the events they complete, in order.

        A packet that breaks the protocol ends the connection: the events before it are
        returned, followed by ``Disconnected(error=...)``; the DISCONNECT owed (MQTT 5) is in
        ``data_to_send()``.
        """
        if self.state in (ConnectionState.DISCONNECTED, ConnectionState.CLOSING):
            return []
        events: list[Event] = []
        decoder = self._decoder
        try:
            for packet in decoder.feed(data):
                handler = _HANDLERS[self.state].get(type(packet))
                if handler is None:
                    raise RemoteProtocolError(
                        ReasonCode.PROTOCOL_ERROR,
                        f"{type(packet).__name__} is not allowed in state {self.state.name}",
                    )
                handler(self, packet, events)
                if self.state is ConnectionState.CLOSING:  # type: ignore[comparison-overlap]
                    return events
            if decoder.error is not None:
                raise decoder.error
        except RemoteProtocolError as exc:
            self._violation(exc, events)
        return events

    def _violation(self, exc: MQTTError, events: list[Event]) -> None:
        if self.state == ConnectionState.CONNECTED and self.version == 5:
            props = Properties(reason_string=exc.message[:_REASON_STRING_MAX])
            self._out.append(encode(Disconnect(exc.reason_code, props), 5))
        self.state = ConnectionState.CLOSING
        events.append(Disconnected(exc.reason_code, error=exc))

    def _handle_connack(self, p: ConnAck, events: list[Event]) -> None:
        if p.reason_code.is_failure:
            self.state = ConnectionState.CLOSING
            events.append(ConnectionRefused(p))
            return
        if p.session_present and self._sent_clean_start:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, "session present after a clean start"
            )  # [MQTT-3.2.2-4]
        props = p.properties
        if (
            self.authentication_method is not None
            and props.authentication_method is not None
            and props.authentication_method != self.authentication_method
        ):
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, "CONNACK has another authentication method"
            )  # [MQTT-4.12.0-5]
        if props is not NO_PROPERTIES:
            self._apply_connack_properties(props)
        self.state = ConnectionState.CONNECTED
        events.append(Connected(p))
        send, done = self.session.resume(
            p.session_present, min(self.max_inflight, self.server_receive_maximum)
        )
        for item in send:
            self._out.append(
                encode(item, self.version) if isinstance(item, PubRel) else self._encode_entry(item)
            )
        events.extend(done)

    def _apply_connack_properties(self, props: Properties) -> None:
        if props.receive_maximum is not None:
            self.server_receive_maximum = props.receive_maximum
        if props.maximum_packet_size is not None:
            self.server_maximum_packet_size = props.maximum_packet_size
        if props.topic_alias_maximum:
            self.server_topic_alias_maximum = props.topic_alias_maximum
            self._out_aliases = OutgoingAliases(props.topic_alias_maximum)
        if props.maximum_qos is not None:
            self.server_maximum_qos = props.maximum_qos
        if props.retain_available is not None:
            self.retain_available = bool(props.retain_available)
        if props.wildcard_subscription_available is not None:
            self.wildcard_subscription_available = bool(props.wildcard_subscription_available)
        if props.subscription_identifier_available is not None:
            self.subscription_identifier_available = bool(props.subscription_identifier_available)
        if props.shared_subscription_available is not None:
            self.shared_subscription_available = bool(props.shared_subscription_available)
        if props.server_keep_alive is not None:
            self._keepalive.interval = props.server_keep_alive  # [MQTT-3.2.2-21]
            if self.ping_timeout is None:
                self._keepalive.ping_timeout = props.server_keep_alive
        if props.assigned_client_identifier:
            self.client_id = props.assigned_client_identifier  # [MQTT-3.2.2-16]
        if props.session_expiry_interval is not None:
            self.session_expiry = props.session_expiry_interval
        self.response_information = props.response_information

    def _acked(self, event: PublishAcked | None, events: list[Event]) -> None:
        if event is not None:
            events.append(event)
            if self.session.held:
                self._pump()

    def _handle_puback(self, p: PubAck, events: list[Event]) -> None:
        self._acked(self.session.puback(p), events)

    def _handle_pubrec(self, p: PubRec, events: list[Event]) -> None:
        session = self.session
        entry = session.outgoing.get(p.packet_id)
        awaiting = entry is not None and entry.state != AWAIT_COMP
        pubrel, done = session.pubrec(p)
        if pubrel is not None:
            self._out.append(encode(pubrel, self.version))
        elif awaiting and entry is not None and not entry.rel_stored:
            events.append(PubRecReceived(p.packet_id))
        self._acked(done, events)

    def _handle_pubcomp(self, p: PubComp, events: list[Event]) -> None:
        self._acked(self.session.pubcomp(p), events)

    def _handle_publish(self, p: Publish, events: list[Event]) -> None:
        props = p.properties
        if props is not NO_PROPERTIES and props.topic_alias is not None:
            p.topic = self._in_aliases.resolve(p.topic, props.topic_alias)
            p.properties = props.replace(topic_alias=None)
        deliver, ack = self.session.receive(p, self.receive_maximum)
        if ack is not None:
            self._out.append(encode(ack, self.version))
        if deliver:
            events.append(MessageReceived(p))

    def _handle_pubrel(self, p: PubRel, events: list[Event]) -> None:
        pubcomp, store = self.session.pubrel(p)
        if pubcomp is not None:
            self._out.append(encode(pubcomp, self.version))
        elif store:
            events.append(PubRelReceived(p.packet_id))

    def _handle_suback(self, p: SubAck, events: list[Event]) -> None:
        request = self._requests.get(p.packet_id)
        if request is None or request[0] != _SUBSCRIBE:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, f"SUBACK for unknown packet id {p.packet_id}"
            )
        if len(p.reason_codes) != request[1]:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, "SUBACK has the wrong number of reason codes"
            )  # [MQTT-3.8.4-6]
        del self._requests[p.packet_id]
        events.append(SubscribeAcked(p.packet_id, tuple(p.reason_codes), p.properties))

    def _handle_unsuback(self, p: UnsubAck, events: list[Event]) -> None:
        request = self._requests.get(p.packet_id)
        if request is None or request[0] != _UNSUBSCRIBE:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, f"UNSUBACK for unknown packet id {p.packet_id}"
            )
        del self._requests[p.packet_id]
        codes = tuple(p.reason_codes) or (ReasonCode.SUCCESS,) * request[1]
        events.append(UnsubscribeAcked(p.packet_id, codes, p.properties))

    def _handle_pingresp(self, p: PingResp, events: list[Event]) -> None:
        self._keepalive.pong()
        events.append(PongReceived())

    def _handle_disconnect(self, p: Disconnect, events: list[Event]) -> None:
        self.state = ConnectionState.CLOSING
        events.append(Disconnected(p.reason_code, p.properties, by_server=True))

    def _handle_auth(self, p: Auth, events: list[Event]) -> None:
        method = self.authentication_method
        if method is None:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, "AUTH without an authentication method in CONNECT"
            )  # [MQTT-4.12.0-6]
        if p.properties.authentication_method != method:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, "AUTH with another authentication method"
            )  # [MQTT-4.12.0-5]
        code = p.reason_code
        if self.state == ConnectionState.CONNECTING:
            allowed = code == ReasonCode.CONTINUE_AUTHENTICATION  # [MQTT-4.12.0-2]
        else:
            allowed = self._reauthenticating and code in (
                ReasonCode.CONTINUE_AUTHENTICATION,
                ReasonCode.SUCCESS,
            )
        if not allowed:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, f"AUTH {code.spec_name} in state {self.state.name}"
            )
        if code == ReasonCode.SUCCESS:
            self._reauthenticating = False
        events.append(AuthReceived(p))


_Handler = Callable[[ClientProtocol, Any, list[Event]], None]
_CONNECTED: dict[type, _Handler] = {
    Publish: ClientProtocol._handle_publish,
    PubAck: ClientProtocol._handle_puback,
    PubRec: ClientProtocol._handle_pubrec,
    PubRel: ClientProtocol._handle_pubrel,
    PubComp: ClientProtocol._handle_pubcomp,
    SubAck: ClientProtocol._handle_suback,
    UnsubAck: ClientProtocol._handle_unsuback,
    PingResp: ClientProtocol._handle_pingresp,
    Disconnect: ClientProtocol._handle_disconnect,
    Auth: ClientProtocol._handle_auth,
}
# Which packets the server may send in each state; anything else is a Protocol Error.
_HANDLERS: Final[dict[ConnectionState, dict[type, _Handler]]] = {
    ConnectionState.CONNECTING: {
        ConnAck: ClientProtocol._handle_connack,
        Auth: ClientProtocol._handle_auth,
        Disconnect: ClientProtocol._handle_disconnect,
    },
    ConnectionState.CONNECTED: _CONNECTED,
}
