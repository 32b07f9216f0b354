"""Fan-out: one PUBLISH -> the sessions whose subscriptions match, encoded once.

MQTT 5 subscribers get one delivery per matching subscription, each with its own subscription
identifier and options; MQTT 3.x subscribers get one delivery at the highest granted QoS
[MQTT-3.3.4-2]. A shared group delivers to one member, round robin among connected members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from wrenmq.broker.auth.acl import Access
from wrenmq.broker.sessions import Session, SubOptions
from wrenmq.codec.encode import PublishTemplate

if TYPE_CHECKING:
    from wrenmq.broker.auth.acl import AclFile
    from wrenmq.broker.authorize import DeliveryAcl
    from wrenmq.broker.subs import SharedGroup, SubscriptionIndex

__all__ = ["deliver_shared", "reader", "route"]


def _online(session: Session) -> bool:
    return session.conn is not None


def _any(session: Session) -> bool:
    return True


Reader = Callable[[Session], bool]


def reader(acl: AclFile | DeliveryAcl | None, topic: str) -> Reader | None:
    """A READ check on ``topic`` per receiver, memoised for one message; None without an ACL."""
    if acl is None:
        return None
    allowed: dict[Session, bool] = {}

    def may_read(session: Session) -> bool:
        ok = allowed.get(session)
        if ok is None:
            ok = allowed[session] = acl.check(
                session.client_id, session.username, topic, Access.READ
            )
        return ok

    return may_read


def route(
    index: SubscriptionIndex[Session, SubOptions],
    topic: str,
    template: PublishTemplate,
    qos: int,
    retain: bool,
    expires_at: float | None,
    origin: str,
    acl: AclFile | DeliveryAcl | None = None,
) -> int:
    """Deliver to every matching subscription; returns the number of deliveries made.

    With an ACL, each receiver is checked for READ access again on delivery.
    """
    match = index.match(topic)
    normal = match.normal
    may_read = reader(acl, topic)
    single = len(normal) == 1
    best: dict[Session, int] | None = None
    count = 0
    for session, opts, _ in normal:
        if opts.no_local and session.client_id == origin:
            continue  # [MQTT-3.8.3-3]
        if may_read is not None and not may_read(session):
            continue
        granted = qos if qos < opts.qos else opts.qos
        if session.version != 5:
            if single:
                session.deliver(template, granted, False, (), expires_at)  # [MQTT-3.3.1-9]
                count += 1
            elif best is None:
                best = {session: granted}
            elif granted > best.get(session, -1):
                best[session] = granted  # 3.1.1: one delivery at the highest QoS [MQTT-3.3.5-1]
            continue
        session.deliver(
            template,
            granted,
            retain and opts.retain_as_published,  # [MQTT-3.3.1-12/13]
            (opts.sub_id,) if opts.sub_id else (),
            expires_at,
        )
        count += 1
    if best:
        for session, granted in best.items():
            session.deliver(template, granted, False, (), expires_at)
        count += len(best)
    for group in match.shared:
        if deliver_shared(group, template, qos, expires_at, may_read=may_read):
            count += 1
    return count


def deliver_shared(
    group: SharedGroup[Session, SubOptions],
    template: PublishTemplate,
    qos: int,
    expires_at: float | None,
    exclude: Session | None = None,
    may_read: Reader | None = None,
) -> bool:
    """Deliver to one member of ``group``: a connected one if any [MQTT-4.8.2]; with ``exclude``
    (redelivery away from a member that left) only another connected one."""
    if exclude is None and may_read is None:
        picked = group.pick(_online) or group.pick(_any)
    else:
        readable = may_read or _any

        def online(s: Session) -> bool:
            return s is not exclude and s.conn is not None and readable(s)

        picked = group.pick(online)
        if picked is None and exclude is None:
            picked = group.pick(readable)
    if picked is None:
        return False
    session, opts = picked
    session.deliver(
        template,
        qos if qos < opts.qos else opts.qos,
        False,
        (opts.sub_id,) if session.version == 5 and opts.sub_id else (),
        expires_at,
        group,
    )
    return True
