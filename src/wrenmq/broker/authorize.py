"""Who may publish to, subscribe to and read a topic: the ACL file, then pluggable authorizers.

The ACL file is asked first, synchronously (``AclFile.decide``): a grant or a deny rule settles
it. What it says nothing about goes to the pluggable authorizers (``Broker(authorizers=...)`` or
``auth_plugins``), whose verdict comes from their cache (``auth_cache_ttl``) or is awaited:
``await_verdicts`` holds the connection (``Connection.suspend``), asks for every missing verdict
at once, keeps the answers in ``conn.granted`` and handles the packet again, which then finds
them. Without authorizers, what the ACL file does not grant is denied (Mosquitto), and without
an ACL file everything is allowed.

Pluggable authorizers judge PUBLISH (WRITE) and SUBSCRIBE, as EMQX's do; the READ check on each
delivery stays synchronous on the broker's hot path: with authorizers configured it applies the
ACL file's deny rules and grants only, and lets through what the file says nothing about (the
authorizers already allowed the subscription).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from wrenmq.broker.auth.acl import Access, AclFile
from wrenmq.broker.handle_connect import within
from wrenmq.broker.hooks import Verdict

if TYPE_CHECKING:
    from collections.abc import Callable

    from wrenmq.broker.connection import Connection

__all__ = ["DeliveryAcl", "allowed", "ask", "await_verdicts", "decision"]


class DeliveryAcl:
    """The ACL file as the delivery check when authorizers follow it: only its deny rules and
    grants count; what it says nothing about may be read.
    """

    __slots__ = ("_acl",)

    def __init__(self, acl: AclFile) -> None:
        self._acl = acl

    def check(self, client_id: str, username: str | None, topic: str, access: Access) -> bool:
        """False only when the file denies the access."""
        return self._acl.decide(client_id, username, topic, access) is not False


def _decision(conn: Connection, topic: str, access: Access, *, use: bool) -> bool | None:
    """The ACL file's decision, else a verdict brought back (taken when ``use``) or cached;
    None when only the authorizers can tell.
    """
    broker = conn.broker
    acl = broker.acl
    if acl is not None:
        decision = acl.decide(conn.client_id, conn.username, topic, access)
        if decision is not None:
            return decision
    chain = broker.authorizer
    if chain is None:
        return acl is None  # the ACL file grants nothing here: denied, as in Mosquitto
    granted = conn.granted
    if granted:
        key = (topic, access)
        verdict = granted.pop(key, None) if use else granted.get(key)
        if verdict is not None:
            return verdict is Verdict.ALLOW
    cached = chain.cached(conn.client_id, conn.username, topic, access)
    return None if cached is None else cached is Verdict.ALLOW


def await_verdicts(
    conn: Connection, checks: list[tuple[str, Access]], retry: Callable[[], None]
) -> bool:
    """Ask the authorizers what nothing settles yet; True if that must be awaited (then the
    connection is held and ``retry`` runs once every answer is in).
    """
    if conn.broker.authorizer is None:
        return False
    missing = [check for check in checks if _decision(conn, *check, use=False) is None]
    if not missing:
        return False
    ask(conn, missing, retry)
    return True


def ask(conn: Connection, missing: list[tuple[str, Access]], retry: Callable[[], None]) -> None:
    """Hold the connection while the authorizers judge ``missing``; then ``retry``, which finds
    the verdicts in ``conn.granted``.
    """
    chain = conn.broker.authorizer
    assert chain is not None
    client_id, username = conn.client_id, conn.username
    timeout = conn.broker.config.auth_timeout

    async def verdicts() -> list[Verdict]:
        asked = [
            within(
                chain.authorize(client_id, username, topic, access),
                timeout,
                Verdict.DENY,
                f"authorizing {client_id!r} to {access.name} {topic!r}",
            )
            for topic, access in missing
        ]
        if len(asked) == 1:  # a PUBLISH: no gather, one task less per message
            return [await asked[0]]
        return list(await asyncio.gather(*asked))

    def answered(verdicts: list[Verdict]) -> None:
        granted = conn.granted
        if granted is None:
            granted = conn.granted = {}
        granted.update(zip(missing, verdicts, strict=True))
        try:
            retry()
        finally:
            conn.granted = None  # non-empty only while the packet is handled again

    conn.suspend(verdicts(), answered)


def decision(conn: Connection, topic: str, access: Access) -> bool | None:
    """The decision if it is known now (the ACL file, a verdict brought back or cached), None
    when the authorizers must be asked (``ask``).
    """
    return _decision(conn, topic, access, use=True)


def allowed(conn: Connection, topic: str, access: Access) -> bool:
    """The decision, now: the ACL file, then a verdict brought back or cached (asked beforehand
    with ``await_verdicts``; one still missing is a denial).
    """
    return _decision(conn, topic, access, use=True) is True
