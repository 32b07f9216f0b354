"""The subscription index: which subscriptions a PUBLISH reaches (MQTT 5 sections 4.7, 4.8).

A pure data structure, the hot path of every PUBLISH: no asyncio, no IO, no clock, no logging.
Subscriber keys (``K``, session objects or client ids) and subscription options (``V``) are opaque.

Layout:

* A trie keyed by topic level. Each node has a ``dict`` of literal children and separate ``+``
  and ``#`` slots, so a match walks at most the nodes whose filters can match instead of every
  filter. A node holds the ordinary subscriptions of its filter (key -> value) and the shared
  groups on it (group name -> :class:`SharedGroup`). Nodes left empty by a removal are pruned, so
  subscribe/unsubscribe churn does not leak memory. Slots and fields that are usually empty
  (children, subscriptions, groups) stay ``None`` until needed: most nodes are leaves or
  interior nodes, and an empty ``dict`` per slot would triple their size.
* A match cache, ``topic -> Match``, bounded by ``max_cache``. When full, the oldest half (by
  insertion) is dropped in one go. That is FIFO rather than strict LRU on purpose: a hit costs a
  single ``dict`` lookup and no reordering, and a hot topic that got dropped costs one trie walk
  to come back. Topics that match nothing share one empty :class:`Match`.
* Invalidation is targeted. A filter without wildcards can only change the result for the one
  topic equal to it, so adding or removing it drops that single cache entry; only a change to a
  wildcard filter clears the whole cache. Churn of exact filters (a device subscribing to its own
  command topic) thus keeps the cache warm. A :class:`SharedGroup` is a live object referenced by
  cached matches, so joining, leaving (while others remain) or re-subscribing to an existing
  group needs no invalidation at all; creating or deleting a group does.

Imports: stdlib (``collections.abc``, ``dataclasses``, ``itertools``, ``typing``) and
``wrenmq.codec.topics`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generic, TypeVar

from wrenmq.codec.topics import is_wildcard, parse_shared, split_levels, validate_topic_filter

__all__ = ["Match", "SharedGroup", "SubscriptionIndex"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAX_CACHE = 10_000

_SINGLE = "+"
_MULTI = "#"


class SharedGroup(Generic[K, V]):
    """The members of one shared subscription ``$share/<name>/<topic_filter>`` (MQTT 5 4.8.2).

    A group is identified by its name together with its filter: ``$share/g/a`` and ``$share/g/b``
    are two groups. Members keep the order in which they joined; a member that re-subscribes
    keeps its place and gets its new value. The object is live: it is shared by cached
    :class:`Match` results and changes as members join and leave.

    Attributes:
        name: The ShareName.
        topic_filter: The filter inside the ``$share/<name>/`` prefix.
    """

    __slots__ = ("_cursor", "_keys", "_values", "name", "topic_filter")

    def __init__(self, name: str, topic_filter: str) -> None:
        self.name = name
        self.topic_filter = topic_filter
        self._keys: list[K] = []
        self._values: dict[K, V] = {}
        self._cursor = 0  # index in _keys of the next member to try; 0 <= _cursor < len or 0

    @property
    def members(self) -> tuple[tuple[K, V], ...]:
        """Every ``(key, value)`` in the group, in the order the members joined."""
        values = self._values
        return tuple((k, values[k]) for k in self._keys)

    def pick(self, is_eligible: Callable[[K], bool]) -> tuple[K, V] | None:
        """Choose the member that receives the next message, round robin.

        Starts at the member after the one picked last and skips members for which
        ``is_eligible`` is false (disconnected, queue full, ...), so that over time each eligible
        member gets an equal share.

        Args:
            is_eligible: Tells whether a member may receive the message now.

        Returns:
            The chosen ``(key, value)``, or None when no member is eligible.
        """
        keys = self._keys
        n = len(keys)
        i = self._cursor
        for _ in range(n):
            key = keys[i]
            i += 1
            if i == n:
                i = 0
            if is_eligible(key):
                self._cursor = i
                return key, self._values[key]
        return None

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return (
            f"SharedGroup(name={self.name!r}, topic_filter={self.topic_filter!r},"
            f" members={len(self._keys)})"
        )

    def _put(self, key: K, value: V) -> bool:
        """Add or update a member; True if it is new."""
        is_new = key not in self._values
        if is_new:
            self._keys.append(key)
        self._values[key] = value
        return is_new

    def _discard(self, key: K) -> None:
        """Remove a present member, keeping the cursor on the member that was next."""
        del self._values[key]
        keys = self._keys
        i = keys.index(key)
        del keys[i]
        if i < self._cursor:
            self._cursor -= 1
        if self._cursor >= len(keys):
            self._cursor = 0


@dataclass(frozen=True, slots=True)
class Match(Generic[K, V]):
    """The subscriptions a topic name reaches.

    Attributes:
        normal: One ``(key, value, topic_filter)`` per matching non-shared subscription. A key
            with overlapping filters appears once per filter: whether it then gets one copy at
            the highest QoS [MQTT-3.3.4-2] or one per subscription is the router's choice.
        shared: The shared groups whose filter matches; the broker picks one member of each
            (see :meth:`SharedGroup.pick`).
    """

    normal: tuple[tuple[K, V, str], ...]
    shared: tuple[SharedGroup[K, V], ...]


_NO_MATCH: Match[Any, Any] = Match((), ())


class _Node(Generic[K, V]):
    """One trie level. ``filter`` is the filter string ending here, set once it has subscribers."""

    __slots__ = ("children", "filter", "groups", "hash", "plus", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K, V]] | None = None
        self.plus: _Node[K, V] | None = None
        self.hash: _Node[K, V] | None = None
        self.subs: dict[K, V] | None = None
        self.groups: dict[str, SharedGroup[K, V]] | None = None
        self.filter = ""

    def is_empty(self) -> bool:
        return (
            self.children is None
            and self.plus is None
            and self.hash is None
            and self.subs is None
            and self.groups is None
        )

    def child(self, level: str) -> _Node[K, V] | None:
        if level == _SINGLE:
            return self.plus
        if level == _MULTI:
            return self.hash
        children = self.children
        return None if children is None else children.get(level)

    def make_child(self, level: str) -> _Node[K, V]:
        node = self.child(level)
        if node is not None:
            return node
        node = _Node()
        if level == _SINGLE:
            self.plus = node
        elif level == _MULTI:
            self.hash = node
        elif self.children is None:
            self.children = {level: node}
        else:
            self.children[level] = node
        return node

    def drop_child(self, level: str) -> None:
        if level == _SINGLE:
            self.plus = None
        elif level == _MULTI:
            self.hash = None
        elif self.children is not None:
            del self.children[level]
            if not self.children:
                self.children = None


class SubscriptionIndex(Generic[K, V]):
    """Every subscription of the broker, indexed for matching topic names.

    A subscription is identified by its key and its filter string as given in SUBSCRIBE, so
    ``a/b`` and ``$share/g/a/b`` from one key are two subscriptions.
    """

    __slots__ = ("_by_key", "_cache", "_count", "_max_cache", "_root")

    def __init__(self, *, max_cache: int = DEFAULT_MAX_CACHE) -> None:
        """Create an empty index.

        Args:
            max_cache: How many topic names' results to remember; 0 disables the cache.

        Raises:
            ValueError: ``max_cache`` is negative.
        """
        if max_cache < 0:
            raise ValueError(f"max_cache must be >= 0, not {max_cache}")
        self._root: _Node[K, V] = _Node()
        self._by_key: dict[K, dict[str, V]] = {}
        self._cache: dict[str, Match[K, V]] = {}
        self._max_cache = max_cache
        self._count = 0

    def add(self, key: K, topic_filter: str, value: V) -> bool:
        """Add a subscription, or replace the value of an existing one.

        Args:
            key: The subscriber.
            topic_filter: The filter as sent; ``$share/<group>/<filter>`` joins shared group
                ``group`` on ``filter``.
            value: The subscription options, stored as is.

        Returns:
            True if the subscription is new, False if it replaced one with the same key and
            filter [MQTT-3.8.4-3].

        Raises:
            RemoteProtocolError: Topic Filter invalid, from
                :func:`~wrenmq.codec.topics.validate_topic_filter`; nothing is changed.
        """
        shared = parse_shared(topic_filter)
        if shared is None:
            validate_topic_filter(topic_filter)
            inner = topic_filter
        else:
            inner = shared.topic_filter
        mine = self._by_key.get(key)
        if mine is None:
            mine = self._by_key[key] = {}
        is_new = topic_filter not in mine
        mine[topic_filter] = value

        node = self._root
        for level in split_levels(inner):
            node = node.make_child(level)
        if shared is None:
            if node.subs is None:
                node.subs = {}
                node.filter = inner
            node.subs[key] = value
            self._invalidate(inner)  # even a replacement: cached results hold the old value
        else:
            if node.groups is None:
                node.groups = {}
            group = node.groups.get(shared.group)
            if group is None:
                group = node.groups[shared.group] = SharedGroup(shared.group, inner)
                self._invalidate(inner)
            group._put(key, value)
        if is_new:
            self._count += 1
        return is_new

    def remove(self, key: K, topic_filter: str) -> bool:
        """Remove one subscription.

        Args:
            key: The subscriber.
            topic_filter: The filter exactly as given to :meth:`add`.

        Returns:
            True if the subscription existed (UNSUBACK Success rather than No subscription
            existed).
        """
        mine = self._by_key.get(key)
        if mine is None or topic_filter not in mine:
            return False
        del mine[topic_filter]
        if not mine:
            del self._by_key[key]
        self._unlink(key, topic_filter)
        self._count -= 1
        return True

    def remove_all(self, key: K) -> int:
        """Remove every subscription of a subscriber, e.g. when its session ends.

        Args:
            key: The subscriber.

        Returns:
            How many subscriptions were removed.
        """
        mine = self._by_key.pop(key, None)
        if mine is None:
            return 0
        for topic_filter in mine:
            self._unlink(key, topic_filter)
        self._count -= len(mine)
        return len(mine)

    def match(self, topic: str) -> Match[K, V]:
        """Find the subscriptions a message published to ``topic`` reaches.

        Args:
            topic: A valid topic name (see :func:`~wrenmq.codec.topics.validate_topic_name`);
                it is not checked again here.

        Returns:
            The matching ordinary subscriptions and shared groups. The result may be cached and
            shared between calls: do not rely on its identity.
        """
        found = self._cache.get(topic)
        if found is not None:
            return found
        found = self._walk(topic)
        if self._max_cache:
            cache = self._cache
            if len(cache) >= self._max_cache:
                # Drop the oldest half at once: amortised O(1) per insert, no per-hit bookkeeping.
                cache = self._cache = dict(islice(cache.items(), len(cache) // 2, None))
            cache[topic] = found
        return found

    def subscriptions_of(self, key: K) -> dict[str, V]:
        """Return the subscriptions of one subscriber.

        Args:
            key: The subscriber.

        Returns:
            A new dict from filter as given (``$share/...`` included) to value, in the order
            they were first added.
        """
        return dict(self._by_key.get(key, ()))

    def filters(self) -> Iterator[tuple[str, K, V]]:
        """Iterate over every subscription as ``(topic_filter, key, value)``.

        Yields:
            One tuple per subscription, grouped by key. Do not change the index while iterating.
        """
        for key, mine in self._by_key.items():
            for topic_filter, value in mine.items():
                yield topic_filter, key, value

    def node_count(self) -> int:
        """Count the trie nodes, the root included (for statistics and tests; walks the trie).

        Returns:
            1 for an empty index.
        """
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            count += 1
            if node.children is not None:
                stack.extend(node.children.values())
            if node.plus is not None:
                stack.append(node.plus)
            if node.hash is not None:
                stack.append(node.hash)
        return count

    def __len__(self) -> int:
        return self._count

    def _invalidate(self, topic_filter: str) -> None:
        """Forget cached results that a change to ``topic_filter`` (not shared) can affect."""
        if is_wildcard(topic_filter):
            self._cache.clear()
        else:
            # Without wildcards a filter matches exactly the topic name equal to it.
            self._cache.pop(topic_filter, None)

    def _unlink(self, key: K, topic_filter: str) -> None:
        """Take a subscription known to exist out of the trie and prune emptied nodes."""
        shared = parse_shared(topic_filter)
        inner = topic_filter if shared is None else shared.topic_filter
        path: list[tuple[_Node[K, V], str]] = []
        node = self._root
        for level in split_levels(inner):
            path.append((node, level))
            child = node.child(level)
            assert child is not None, "subscription index out of sync with its trie"
            node = child
        if shared is None:
            assert node.subs is not None
            del node.subs[key]
            if not node.subs:
                node.subs = None
            self._invalidate(inner)
        else:
            assert node.groups is not None
            group = node.groups[shared.group]
            group._discard(key)
            if not len(group):
                del node.groups[shared.group]
                if not node.groups:
                    node.groups = None
                self._invalidate(inner)
        for parent, level in reversed(path):
            if not node.is_empty():
                break
            parent.drop_child(level)
            node = parent

    def _walk(self, topic: str) -> Match[K, V]:
        """Match ``topic`` against the trie, without the cache."""
        levels = split_levels(topic)
        depth = len(levels)
        root = self._root
        hits: list[_Node[K, V]] = []
        stack: list[tuple[_Node[K, V], int]] = []
        # Wildcards in the first level do not match names starting with "$" [MQTT-4.7.2-1].
        if topic[:1] != "$":
            if root.hash is not None:
                hits.append(root.hash)
            if root.plus is not None:
                stack.append((root.plus, 1))
        if root.children is not None:
            first = root.children.get(levels[0])
            if first is not None:
                stack.append((first, 1))
        while stack:
            node, i = stack.pop()
            # "#" matches the remaining levels, none included: "a/#" matches "a" (4.7.1.2).
            if node.hash is not None:
                hits.append(node.hash)
            if i == depth:
                hits.append(node)
                continue
            if node.children is not None:
                child = node.children.get(levels[i])
                if child is not None:
                    stack.append((child, i + 1))
            if node.plus is not None:
                stack.append((node.plus, i + 1))

        normal: list[tuple[K, V, str]] = []
        shared: list[SharedGroup[K, V]] = []
        for node in hits:
            if node.subs is not None:
                topic_filter = node.filter
                normal.extend([(k, v, topic_filter) for k, v in node.subs.items()])
            if node.groups is not None:
                shared.extend(node.groups.values())
        if not normal and not shared:
            return _NO_MATCH
        return Match(tuple(normal), tuple(shared))
