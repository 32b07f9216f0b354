"""SUBSCRIBE and UNSUBSCRIBE: filter checks, grants, retained delivery [MQTT-3.8, 3.10]."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wrenmq.broker.auth.acl import Access
from wrenmq.broker.authorize import allowed, await_verdicts
from wrenmq.broker.hooks import HookEvent
from wrenmq.broker.sessions import SubOptions
from wrenmq.codec.packets import SubAck, Subscribe, UnsubAck, Unsubscribe
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.topics import is_wildcard, parse_shared, validate_topic_filter
from wrenmq.errors import RemoteProtocolError

if TYPE_CHECKING:
    from wrenmq.broker.connection import Connection

__all__ = ["handle_subscribe", "handle_unsubscribe"]


def _valid(topic_filter: str) -> bool:
    try:
        validate_topic_filter(topic_filter)
        parse_shared(topic_filter)
    except RemoteProtocolError:
        return False
    return True


def handle_subscribe(conn: Connection, p: Subscribe) -> None:
    """Grant or refuse each filter, answer SUBACK, then send matching retained messages."""
    broker = conn.broker
    session = conn.session
    if session is None:
        raise RemoteProtocolError(ReasonCode.PROTOCOL_ERROR, "SUBSCRIBE before CONNECT")
    cfg = broker.config
    sub_id = None
    if p.properties.subscription_identifiers:
        if not cfg.subscription_identifier_available:
            raise RemoteProtocolError(
                ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                "subscription identifiers are not supported",
            )
        sub_id = p.properties.subscription_identifiers[0]
    check = broker.acl is not None or broker.authorizer is not None
    if check and broker.authorizer is not None:
        # Every verdict before any filter is granted: the packet may have to be handled again.
        wanted = [
            (s.topic_filter, Access.SUBSCRIBE) for s in p.subscriptions if _valid(s.topic_filter)
        ]
        if await_verdicts(conn, wanted, lambda: handle_subscribe(conn, p)):
            return
    codes: list[ReasonCode] = []
    retained: list[tuple[str, SubOptions]] = []
    hooks = broker.hooks
    for sub in p.subscriptions:
        topic_filter = sub.topic_filter
        try:
            validate_topic_filter(topic_filter)
            shared = parse_shared(topic_filter)
        except RemoteProtocolError:
            codes.append(ReasonCode.TOPIC_FILTER_INVALID)
            continue
        if shared is not None:
            if sub.no_local:
                raise RemoteProtocolError(
                    ReasonCode.PROTOCOL_ERROR, "no local on a shared subscription"
                )  # [MQTT-3.8.3-4]
            if not cfg.shared_subscription_available:
                codes.append(ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
                continue
        plain = shared.topic_filter if shared is not None else topic_filter
        if not cfg.wildcard_subscription_available and is_wildcard(plain):
            codes.append(ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED)
            continue
        limit = cfg.max_subscriptions_per_client
        if (
            limit
            and topic_filter not in session.subscriptions
            and len(session.subscriptions) >= limit
        ):
            codes.append(ReasonCode.QUOTA_EXCEEDED)
            continue
        if cfg.max_topic_levels and plain.count("/") + 1 > cfg.max_topic_levels:
            codes.append(ReasonCode.TOPIC_FILTER_INVALID)
            continue
        if check and not allowed(conn, topic_filter, Access.SUBSCRIBE):
            codes.append(ReasonCode.NOT_AUTHORIZED)  # 0x80 Failure in 3.1.1
            continue
        qos = min(sub.qos, cfg.max_qos)
        if hooks.intercepts(HookEvent.CLIENT_SUBSCRIBING):
            granted = hooks.intercept_subscribe(conn, topic_filter, qos)
            if granted >= 0x80:
                codes.append(ReasonCode(granted))
                continue
            qos = granted
        opts = SubOptions(qos, sub.no_local, sub.retain_as_published, sub.retain_handling, sub_id)
        is_new = broker.subscribe(session, topic_filter, opts)
        codes.append(ReasonCode(qos))
        if shared is None and (sub.retain_handling == 0 or (sub.retain_handling == 1 and is_new)):
            retained.append((topic_filter, opts))  # [MQTT-3.3.1-9..11]
        if hooks.observed(HookEvent.CLIENT_SUBSCRIBED):
            hooks.notify(HookEvent.CLIENT_SUBSCRIBED, conn.client_id, topic_filter, qos)
    conn.send(SubAck(p.packet_id, codes))
    for topic_filter, opts in retained:
        broker.send_retained(session, topic_filter, opts)


def handle_unsubscribe(conn: Connection, p: Unsubscribe) -> None:
    """Remove each filter and answer UNSUBACK [MQTT-3.10.4]."""
    broker = conn.broker
    session = conn.session
    if session is None:
        raise RemoteProtocolError(ReasonCode.PROTOCOL_ERROR, "UNSUBSCRIBE before CONNECT")
    codes: list[ReasonCode] = []
    for topic_filter in p.topic_filters:
        try:
            validate_topic_filter(topic_filter)
        except RemoteProtocolError:
            codes.append(ReasonCode.TOPIC_FILTER_INVALID)
            continue
        if broker.unsubscribe(session, topic_filter):
            codes.append(ReasonCode.SUCCESS)
            if broker.hooks.observed(HookEvent.CLIENT_UNSUBSCRIBED):
                broker.hooks.notify(HookEvent.CLIENT_UNSUBSCRIBED, conn.client_id, topic_filter)
        else:
            codes.append(ReasonCode.NO_SUBSCRIPTION_EXISTED)
    conn.send(UnsubAck(p.packet_id, codes if conn.version == 5 else []))
