"""PUBLISH and its acknowledgements, in mosquitto's fixed order: rate -> topic alias -> limits ->
hooks -> QoS 2 duplicate check -> retain -> route -> acknowledge [MQTT-3.3, 4.3].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wrenmq.broker.auth.acl import Access
from wrenmq.broker.authorize import ask, decision
from wrenmq.broker.hooks import HookEvent
from wrenmq.codec.packets import PubAck, PubComp, Publish, PubRec, PubRel
from wrenmq.codec.properties import NO_PROPERTIES
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import MQTTError, RemoteProtocolError

if TYPE_CHECKING:
    from wrenmq.broker.connection import Connection
    from wrenmq.broker.sessions import Session

__all__ = ["handle_puback", "handle_pubcomp", "handle_publish", "handle_pubrec", "handle_pubrel"]

_SUCCESS = ReasonCode.SUCCESS
_NO_MATCHING = ReasonCode.NO_MATCHING_SUBSCRIBERS


def _ack(conn: Connection, qos: int, packet_id: int, code: ReasonCode) -> None:
    first = 0x40 if qos == 1 else 0x50
    if code and conn.version == 5:
        data = bytes((first, 3, packet_id >> 8, packet_id & 0xFF, code))
    else:
        data = bytes((first, 2, packet_id >> 8, packet_id & 0xFF))
    conn.broker.send_ack(conn, data)


def _remember_qos2(session: Session, packet_id: int) -> None:
    """Hold an incoming QoS 2 packet id until PUBREL, durably for a persistent session."""
    session.incoming_qos2.add(packet_id)
    if session.durable is not None:
        session.durable.incoming_qos2(session, packet_id, True)


def _denied(conn: Connection, session: Session, qos: int, packet_id: int) -> None:
    """Not authorized: 0x87 in MQTT 5; 3.1.1 cannot say no, so the message is dropped silently."""
    if qos:
        v5 = conn.version == 5
        if qos == 2 and not v5:
            _remember_qos2(session, packet_id)
        _ack(conn, qos, packet_id, ReasonCode.NOT_AUTHORIZED if v5 else _SUCCESS)


def handle_publish(conn: Connection, p: Publish) -> None:
    """An incoming PUBLISH: validate, route to subscribers, store if retained, acknowledge."""
    broker = conn.broker
    session = conn.session
    if session is None:
        raise RemoteProtocolError(ReasonCode.PROTOCOL_ERROR, "PUBLISH before CONNECT")
    again = bool(conn.granted)  # handled again with an authorizer's verdict: counted already
    if not again:
        broker.stats.messages_received += 1
    limiter = conn.limiter
    if limiter is not None and limiter.messages is not None and not again:
        debt = limiter.publish(broker.loop.time())
        if debt and not conn.over_rate(debt, "message rate"):
            raise MQTTError(
                ReasonCode.MESSAGE_RATE_TOO_HIGH, "message rate above message_rate_limit"
            )
    topic = p.topic
    props = p.properties
    if props is not NO_PROPERTIES:
        alias = props.topic_alias
        if alias is not None:
            if alias > conn.topic_alias_max:
                raise RemoteProtocolError(
                    ReasonCode.TOPIC_ALIAS_INVALID,
                    f"topic alias {alias} above the maximum {conn.topic_alias_max}",
                )  # [MQTT-3.3.2-9]
            if topic:
                conn.aliases[alias] = topic
            else:
                known = conn.aliases.get(alias)
                if known is None:
                    raise RemoteProtocolError(
                        ReasonCode.PROTOCOL_ERROR, f"unknown topic alias {alias}"
                    )
                topic = known
            props = props.replace(topic_alias=None)
        if props.subscription_identifiers:
            raise RemoteProtocolError(
                ReasonCode.PROTOCOL_ERROR, "a client may not send subscription identifiers"
            )  # [MQTT-3.3.4-6]
    qos = p.qos
    packet_id = p.packet_id
    cfg = broker.config
    if qos > cfg.max_qos:
        raise RemoteProtocolError(ReasonCode.QOS_NOT_SUPPORTED, f"QoS {qos} is not supported")
    if p.retain and not cfg.retain_available:
        raise RemoteProtocolError(ReasonCode.RETAIN_NOT_SUPPORTED, "retain is not supported")
    if qos == 2:
        incoming = session.incoming_qos2
        if packet_id in incoming:
            # A resend of a message we already have: acknowledge, never route twice [MQTT-4.3.3].
            _ack(conn, 2, packet_id, _SUCCESS)
            return
        # Receive Maximum exists only in MQTT 5; a 3.1.1 client was never told a limit.
        if conn.version == 5 and len(incoming) >= conn.receive_maximum:
            raise RemoteProtocolError(
                ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "more unacknowledged QoS 2 than allowed"
            )  # [MQTT-3.3.4-9]
    levels = cfg.max_topic_levels
    if levels and topic.count("/") >= levels:
        # Well formed but not accepted here: 0x90 Topic Name invalid (MQTT 5 table 2-6); dropped
        # before routing, so deep topics cannot make matching expensive.
        broker.message_dropped(None, None, "topic name deeper than max_topic_levels")
        if qos:
            if qos == 2 and conn.version < 5:
                _remember_qos2(session, packet_id)
            _ack(conn, qos, packet_id, ReasonCode.TOPIC_NAME_INVALID)
        return
    limit = cfg.message_size_limit
    if limit and len(p.payload) > limit:
        broker.message_dropped(None, None, "payload larger than message_size_limit")
        if qos:
            # A v5 PUBREC >= 0x80 ends the flow: no PUBREL comes, the packet id is free again
            # (4.3.3), so it must not be remembered as a QoS 2 message in progress.
            if qos == 2 and conn.version < 5:
                _remember_qos2(session, packet_id)
            # 0x95 is not allowed in PUBACK/PUBREC (MQTT 5 table 2-6; paho rejects the packet).
            _ack(conn, qos, packet_id, ReasonCode.QUOTA_EXCEEDED)
        return
    if topic.startswith("$"):
        # Topics beginning with '$' belong to the server [MQTT-4.7.2-1]: accept and drop.
        if qos:
            if qos == 2 and conn.version < 5:
                _remember_qos2(session, packet_id)
            _ack(conn, qos, packet_id, ReasonCode.NOT_AUTHORIZED)
        return
    if broker.acl is not None or broker.authorizer is not None:
        ok = decision(conn, topic, Access.WRITE)
        if ok is None:  # handled again once the authorizers have answered
            ask(conn, [(topic, Access.WRITE)], lambda: handle_publish(conn, p))
            return
        if not ok:
            _denied(conn, session, qos, packet_id)
            return
    hooks = broker.hooks
    if hooks.intercepts_publish:
        result = hooks.intercept_publish(conn, topic, p.payload, qos, p.retain, props)
        if result is None:
            if qos:
                if qos == 2 and conn.version < 5:
                    _remember_qos2(session, packet_id)
                _ack(conn, qos, packet_id, ReasonCode.NOT_AUTHORIZED)
            return
        topic, payload, qos_out, retain, props = result
    else:
        payload, qos_out, retain = p.payload, qos, p.retain
    count = broker.publish_message(topic, payload, qos_out, retain, props, conn.client_id)
    if broker.pressure:
        conn.block_on(broker.pressure)
        broker.pressure.clear()
    if qos:
        if qos == 2:
            _remember_qos2(session, packet_id)
        _ack(conn, qos, packet_id, _SUCCESS if count else _NO_MATCHING)
    if hooks.observed(HookEvent.MESSAGE_PUBLISHED):
        hooks.notify(HookEvent.MESSAGE_PUBLISHED, conn.client_id, topic, qos, retain, count)


def handle_puback(conn: Connection, p: PubAck) -> None:
    """PUBACK: a QoS 1 delivery is complete."""
    session = conn.session
    if session is not None and session.acked(p.packet_id) is not None:
        conn.broker.message_delivered(session)


def handle_pubrec(conn: Connection, p: PubRec) -> None:
    """PUBREC: answer PUBREL (unless the receiver refused the message) [MQTT-4.3.3-4]."""
    session = conn.session
    if session is not None and session.received(p.packet_id, p.reason_code >= 0x80):
        conn.send_pubrel(p.packet_id)


def handle_pubrel(conn: Connection, p: PubRel) -> None:
    """PUBREL: release the QoS 2 packet id and answer PUBCOMP [MQTT-4.3.3-11]."""
    session = conn.session
    if session is None:
        return
    if p.packet_id in session.incoming_qos2:
        session.incoming_qos2.discard(p.packet_id)
        pubcomp = b"\x70\x02" + p.packet_id.to_bytes(2, "big")
        if session.durable is not None:
            session.durable.incoming_qos2(session, p.packet_id, False)
            # After PUBCOMP the client reuses the packet id: the release must be durable first,
            # or a crash brings the id back and the next message with it is taken for a resend
            # and dropped (durability "ack").
            conn.broker.send_ack(conn, pubcomp)
        else:
            conn.write(pubcomp)
    elif conn.version == 5:
        conn.send(PubComp(p.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))
    else:
        conn.write(b"\x70\x02" + p.packet_id.to_bytes(2, "big"))


def handle_pubcomp(conn: Connection, p: PubComp) -> None:
    """PUBCOMP: a QoS 2 delivery is complete."""
    session = conn.session
    if session is not None and session.acked(p.packet_id) is not None:
        conn.broker.message_delivered(session)
