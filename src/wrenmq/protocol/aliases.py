"""Topic aliases (MQTT 5 section 3.3.2.3.4): outgoing assignment and incoming resolution.

Both tables live for one network connection only [MQTT-3.3.2-7]. The outgoing side gives an alias
to a topic the second time it is published (a topic used once does not spend one of the few
aliases the server allows). Once every alias the server allows is given, the least recently used
one is reassigned to the next topic published twice: the PUBLISH that carries the new topic name
with the alias rebinds it at the server [MQTT-3.3.2-12]. Imports only from ``codec`` and
``errors``; no IO, no clock.
"""

from __future__ import annotations

from collections import OrderedDict

from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import RemoteProtocolError

__all__ = ["IncomingAliases", "OutgoingAliases"]

SEEN_PER_ALIAS = 8  # topics remembered as "seen once" per available alias


class OutgoingAliases:
    """Chooses the Topic Alias for outgoing PUBLISH packets.

    Args:
        maximum: the server's Topic Alias Maximum; 0 disables aliases [MQTT-3.3.2-9].
    """

    __slots__ = ("_by_topic", "_free", "_next", "_seen", "_seen_max", "maximum")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._by_topic: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self._free: list[int] = []  # aliases given back by forget()
        self._next = 1
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_max = maximum * SEEN_PER_ALIAS

    def assign(self, topic: str) -> tuple[int | None, bool]:
        """Return ``(alias, known)`` for a PUBLISH to ``topic``.

        ``alias`` is ``None`` when the topic goes out without one; ``known`` is True when the
        server already knows the alias, so the topic name may be sent empty. When ``known`` is
        False the PUBLISH must carry the topic name, which (re)binds the alias.
        """
        by_topic = self._by_topic
        alias = by_topic.get(topic)
        if alias is not None:
            by_topic.move_to_end(topic)
            return alias, True
        if not self.maximum:
            return None, False
        seen = self._seen
        if topic not in seen:
            seen[topic] = None
            if len(seen) > self._seen_max:
                seen.popitem(last=False)
            return None, False
        del seen[topic]
        if self._free:
            alias = self._free.pop()
        elif self._next <= self.maximum:
            alias = self._next
            self._next += 1
        else:
            _, alias = by_topic.popitem(last=False)  # reassign the least recently used alias
        by_topic[topic] = alias
        return alias, False

    def forget(self, topic: str) -> None:
        """Drop the alias of ``topic`` (its establishing PUBLISH was not sent after all).

        The alias is free again; the server may still bind it to an older topic, which the next
        PUBLISH that uses it replaces, since that one carries the topic name.
        """
        alias = self._by_topic.pop(topic, None)
        if alias is not None:
            self._free.append(alias)


class IncomingAliases:
    """Resolves the Topic Alias of incoming PUBLISH packets.

    Args:
        maximum: the Topic Alias Maximum this client announced in CONNECT.
    """

    __slots__ = ("_topics", "maximum")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._topics: dict[int, str] = {}

    def resolve(self, topic: str, alias: int) -> str:
        """Return the topic name of a PUBLISH carrying ``alias`` (and ``topic``, maybe empty).

        Raises:
            RemoteProtocolError: Topic Alias invalid when ``alias`` is above the maximum
                [MQTT-3.3.2-10], Protocol Error for an empty topic with an unknown alias.
        """
        if not 0 < alias <= self.maximum:
            raise RemoteProtocolError(
                ReasonCode.TOPIC_ALIAS_INVALID,
                f"topic alias {alias} is outside 1..{self.maximum}",
            )
        if topic:
            self._topics[alias] = topic  # [MQTT-3.3.2-12]: a non-empty name (re)binds the alias
            return topic
        known = self._topics.get(alias)
        if known is None:
            raise RemoteProtocolError(ReasonCode.PROTOCOL_ERROR, f"unknown topic alias {alias}")
        return known
