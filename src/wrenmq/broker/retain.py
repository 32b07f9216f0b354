"""Retained messages: one per topic, replaced by a newer one, deleted by an empty payload, with
message expiry and count/size caps [MQTT-3.3.1-5..8]. Pure data structure.
"""

from __future__ import annotations

from collections.abc import Iterator

from wrenmq.codec.encode import PublishTemplate
from wrenmq.codec.topics import is_wildcard, topic_matches

__all__ = ["Retained", "RetainedStore"]


class Retained:
    """One retained message."""

    __slots__ = ("expires_at", "qos", "template")

    def __init__(self, template: PublishTemplate, qos: int, expires_at: float | None) -> None:
        self.template = template
        self.qos = qos
        self.expires_at = expires_at


class RetainedStore:
    """Topic -> retained message."""

    def __init__(self, *, max_count: int = 0, max_size: int = 0) -> None:
        self._by_topic: dict[str, Retained] = {}
        self.max_count = max_count
        self.max_size = max_size
        self.rejected = 0

    def __len__(self) -> int:
        return len(self._by_topic)

    def __iter__(self) -> Iterator[tuple[str, Retained]]:
        return iter(self._by_topic.items())

    def set(
        self, topic: str, template: PublishTemplate, qos: int, expires_at: float | None
    ) -> bool:
        """Store, replace, or (empty payload) delete; False if a cap refused it."""
        if not template.payload:
            self._by_topic.pop(topic, None)  # [MQTT-3.3.1-6]
            return True
        if self.max_size and len(template.payload) > self.max_size:
            self.rejected += 1
            return False
        if self.max_count and topic not in self._by_topic and len(self._by_topic) >= self.max_count:
            self.rejected += 1
            return False
        self._by_topic[topic] = Retained(template, qos, expires_at)
        return True

    def get(self, topic: str) -> Retained | None:
        """The retained message of ``topic``, if any."""
        return self._by_topic.get(topic)

    def matching(self, topic_filter: str, now: float) -> list[Retained]:
        """Retained messages whose topic matches ``topic_filter``, dropping expired ones."""
        if not is_wildcard(topic_filter):
            found = self._by_topic.get(topic_filter)
            candidates = [(topic_filter, found)] if found is not None else []
        else:
            candidates = [
                (t, r) for t, r in self._by_topic.items() if topic_matches(topic_filter, t)
            ]
        out = []
        for topic, msg in candidates:
            if msg.expires_at is not None and msg.expires_at <= now:
                del self._by_topic[topic]  # expired retained messages are never delivered
                continue
            out.append(msg)
        return out

    def expire(self, now: float) -> int:
        """Remove every expired message; returns how many."""
        dead = [
            t for t, r in self._by_topic.items() if r.expires_at is not None and r.expires_at <= now
        ]
        for topic in dead:
            del self._by_topic[topic]
        return len(dead)
