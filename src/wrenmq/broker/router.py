"""Fan-out: one PUBLISH -> the sessions whose subscriptions match, encoded once.

MQTT 5 subscribers get one delivery per matching subscription, each with its own subscription
identifier and options; MQTT 3.x subscribers get one delivery at the highest granted QoS
[MQTT-3.3.4-2]. A shared group delivers to one member, round robin among connected members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wrenmq.broker.auth.acl import Access
from wrenmq.broker.sessions import Session, SubOptions
from wrenmq.codec.encode import PublishTemplate

if TYPE_CHECKING:
    from wrenmq.broker.auth.acl import AclFile
    from wrenmq.broker.subs import Match, SharedGroup, SubscriptionIndex

__all__ = ["deliver_shared", "route"]


def _online(session: Session) -> bool:
    return session.conn is not None


def _any(session: Session) -> bool:
    return True


def route(
    index: SubscriptionIndex[Session, SubOptions],
    topic: str,
    template: PublishTemplate,
    qos: int,
    retain: bool,
    expires_at: float | None,
    origin: str,
    acl: AclFile | None = None,
) -> int:
    """Deliver to every matching subscription; returns the number of deliveries made.

    With an ACL, each receiver is checked for READ access again on delivery.
    """
    match = index.match(topic)
    normal = match.normal
    if acl is not None:
        return _route_checked(match, acl, topic, template, qos, retain, expires_at, origin)
    count = 0
    if len(normal) == 1:
        session, opts, _ = normal[0]
        if not (opts.no_local and session.client_id == origin):
            v5 = session.version == 5
            session.deliver(
                template,
                qos if qos < opts.qos else opts.qos,
                retain and v5 and opts.retain_as_published,  # [MQTT-3.3.1-12/13]
                (opts.sub_id,) if v5 and opts.sub_id else (),
                expires_at,
            )
            count = 1
    elif normal:
        best: dict[Session, int] | None = None
        for session, opts, _ in normal:
            if opts.no_local and session.client_id == origin:
                continue  # [MQTT-3.8.3-3]
            granted = qos if qos < opts.qos else opts.qos
            if session.version != 5:
                if best is None:
                    best = {}
                if granted > best.get(session, -1):
                    best[session] = granted
                continue
            session.deliver(
                template,
                granted,
                retain and opts.retain_as_published,
                (opts.sub_id,) if opts.sub_id else (),
                expires_at,
            )
            count += 1
        if best:
            for session, granted in best.items():
                session.deliver(template, granted, False, (), expires_at)
            count += len(best)
    for group in match.shared:
        if deliver_shared(group, template, qos, expires_at):
            count += 1
    return count


def _route_checked(
    match: Match[Session, SubOptions],
    acl: AclFile,
    topic: str,
    template: PublishTemplate,
    qos: int,
    retain: bool,
    expires_at: float | None,
    origin: str,
) -> int:
    """``route`` with a READ check per receiver (the slower path, taken only with an ACL)."""
    allowed: dict[Session, bool] = {}

    def may_read(session: Session) -> bool:
        ok = allowed.get(session)
        if ok is None:
            ok = allowed[session] = acl.check(
                session.client_id, session.username, topic, Access.READ
            )
        return ok

    best: dict[Session, int] = {}
    count = 0
    for session, opts, _ in match.normal:
        if (opts.no_local and session.client_id == origin) or not may_read(session):
            continue
        granted = qos if qos < opts.qos else opts.qos
        if session.version != 5:
            if granted > best.get(session, -1):
                best[session] = granted
            continue
        session.deliver(
            template,
            granted,
            retain and opts.retain_as_published,
            (opts.sub_id,) if opts.sub_id else (),
            expires_at,
        )
        count += 1
    for session, granted in best.items():
        session.deliver(template, granted, False, (), expires_at)
    count += len(best)
    for group in match.shared:
        picked = group.pick(lambda s: s.conn is not None and may_read(s)) or group.pick(may_read)
        if picked is not None:
            session, opts = picked
            session.deliver(
                template,
                qos if qos < opts.qos else opts.qos,
                False,
                (opts.sub_id,) if session.version == 5 and opts.sub_id else (),
                expires_at,
                group,
            )
            count += 1
    return count


def deliver_shared(
    group: SharedGroup[Session, SubOptions],
    template: PublishTemplate,
    qos: int,
    expires_at: float | None,
    exclude: Session | None = None,
) -> bool:
    """Deliver to one member of ``group``: a connected one if any [MQTT-4.8.2]."""
    if exclude is None:
        picked = group.pick(_online) or group.pick(_any)
    else:
        picked = group.pick(lambda s: s is not exclude and s.conn is not None)
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
