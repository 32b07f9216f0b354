"""Topic names, topic filters, shared-subscription filters and matching (MQTT 5 section 4.7, 4.8.2).

Pure functions over ``str``: validate a topic name (PUBLISH, Will) or a topic filter (SUBSCRIBE,
UNSUBSCRIBE), parse ``$share/<group>/<filter>``, and decide whether a filter matches a name.
Invalid input raises :class:`~wrenmq.errors.RemoteProtocolError` carrying Topic Name invalid
(0x90) or Topic Filter invalid (0x8F); a caller that produced the string itself may re-raise it as
a ``LocalProtocolError``.

The rules are the same for MQTT 3.1.1 and 5.0. ``$share/`` is recognised whatever the protocol
version; whether shared subscriptions are allowed at all is the broker's decision, not the codec's.

Imports: stdlib (``dataclasses``) and ``wrenmq.codec.reason_codes`` / ``wrenmq.errors`` only; no
IO, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.errors import RemoteProtocolError

__all__ = [
    "MAX_TOPIC_BYTES",
    "SHARE_PREFIX",
    "SharedFilter",
    "is_wildcard",
    "parse_shared",
    "split_levels",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]

MAX_TOPIC_BYTES = 65_535  # a UTF-8 Encoded String carries a two-byte length [MQTT-1.5.4]
SHARE_PREFIX = "$share/"

_SEP = "/"
_SINGLE = "+"
_MULTI = "#"
# Every code point is at most 4 UTF-8 bytes, so a string this short can never be too long.
_ALWAYS_SHORT = MAX_TOPIC_BYTES // 4
_SHOWN_CHARS = 64  # how much of an offending string an error message repeats


@dataclass(frozen=True, slots=True)
class SharedFilter:
    """A parsed ``$share/<group>/<topic_filter>`` subscription (MQTT 5 section 4.8.2).

    Attributes:
        group: The ShareName: non-empty, without ``/``, ``+`` or ``#``.
        topic_filter: The filter inside, an ordinary valid topic filter.
    """

    group: str
    topic_filter: str


def split_levels(topic: str) -> list[str]:
    """Split a topic name or filter into its levels.

    Empty levels are real levels: ``"/a"`` is ``["", "a"]`` and ``"a//b"`` is ``["a", "", "b"]``
    (MQTT 5 section 4.7.1.1).

    Args:
        topic: A topic name or topic filter.

    Returns:
        The levels, at least one.
    """
    return topic.split(_SEP)


def is_wildcard(topic_filter: str) -> bool:
    """Tell whether a topic filter contains a wildcard (``+`` or ``#``).

    Args:
        topic_filter: A topic filter.

    Returns:
        True when the filter can match more than one topic name.
    """
    return _SINGLE in topic_filter or _MULTI in topic_filter


def validate_topic_name(topic: str) -> None:
    """Check a topic name as carried by PUBLISH or a Will message.

    Args:
        topic: The topic name.

    Raises:
        RemoteProtocolError: Topic Name invalid (0x90) when the name is empty [MQTT-4.7.3-1],
            contains a wildcard character [MQTT-3.3.2-2], contains U+0000 [MQTT-4.7.3-2], is not
            encodable as UTF-8 (a lone surrogate) [MQTT-1.5.4-1] or encodes to more than 65535
            bytes [MQTT-4.7.3-3].
    """
    code = ReasonCode.TOPIC_NAME_INVALID
    _check_string(topic, code, "topic name")
    if _SINGLE in topic or _MULTI in topic:
        raise RemoteProtocolError(code, f"wildcard in topic name {_show(topic)}")


def validate_topic_filter(topic_filter: str) -> None:
    """Check a topic filter as carried by SUBSCRIBE or UNSUBSCRIBE.

    A filter starting with ``$share/`` is checked as a shared subscription by
    :func:`parse_shared`.

    Args:
        topic_filter: The topic filter.

    Raises:
        RemoteProtocolError: Topic Filter invalid (0x8F) when the filter is empty [MQTT-4.7.3-1],
            contains U+0000 [MQTT-4.7.3-2], is not encodable as UTF-8, encodes to more than 65535
            bytes [MQTT-4.7.3-3], has ``#`` anywhere but alone in the last level [MQTT-4.7.1-1],
            has ``+`` not alone in its level [MQTT-4.7.1-2], or is a malformed ``$share/`` filter
            [MQTT-4.8.2-1] [MQTT-4.8.2-2].
    """
    if topic_filter.startswith(SHARE_PREFIX):
        parse_shared(topic_filter)
        return
    _check_string(topic_filter, ReasonCode.TOPIC_FILTER_INVALID, "topic filter")
    _check_wildcards(topic_filter)


def parse_shared(topic_filter: str) -> SharedFilter | None:
    """Parse a shared-subscription filter ``$share/<group>/<topic_filter>``.

    Args:
        topic_filter: A topic filter, shared or not.

    Returns:
        None when the filter does not start with ``$share/`` (it is an ordinary filter, which this
        function does not check); otherwise the group and the inner filter.

    Raises:
        RemoteProtocolError: Topic Filter invalid (0x8F) when the ShareName is empty, contains
            ``+`` or ``#``, is not followed by ``/`` and a non-empty topic filter
            [MQTT-4.8.2-1] [MQTT-4.8.2-2], or when the whole filter or the inner filter is
            invalid as in :func:`validate_topic_filter`.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    code = ReasonCode.TOPIC_FILTER_INVALID
    # The two-byte length limit applies to the filter as sent, prefix and group included.
    _check_string(topic_filter, code, "topic filter")
    group, sep, inner = topic_filter[len(SHARE_PREFIX) :].partition(_SEP)
    if not group:
        raise RemoteProtocolError(code, f"empty share name in {_show(topic_filter)}")
    if _SINGLE in group or _MULTI in group:
        raise RemoteProtocolError(code, f"wildcard in share name {_show(group)}")
    if not sep or not inner:
        raise RemoteProtocolError(
            code, f"no topic filter after share name in {_show(topic_filter)}"
        )
    _check_wildcards(inner)
    return SharedFilter(group=group, topic_filter=inner)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Tell whether a topic filter matches a topic name (MQTT 5 section 4.7).

    ``+`` matches exactly one level, which may be empty; ``#`` matches its parent level and any
    number of child levels (``a/#`` matches ``a``, ``a/`` and ``a/b/c``). A filter whose first
    level is a wildcard does not match a name starting with ``$`` [MQTT-4.7.2-1], so ``#`` does not
    match ``$SYS/x`` but ``$SYS/#`` does.

    Both arguments are assumed valid (see :func:`validate_topic_filter` and
    :func:`validate_topic_name`); for a shared subscription pass
    :attr:`SharedFilter.topic_filter`, not the ``$share/...`` string.

    Args:
        topic_filter: A valid, non-shared topic filter.
        topic: A valid topic name.

    Returns:
        True when a message published to ``topic`` is delivered to a subscription on
        ``topic_filter``.
    """
    if _SINGLE not in topic_filter and _MULTI not in topic_filter:
        return topic_filter == topic
    first = topic_filter[0]
    if topic[:1] == "$" and first in (_SINGLE, _MULTI):
        # A valid filter's wildcard is a whole level, so its first character tells [MQTT-4.7.2-1].
        return False
    filter_levels = topic_filter.split(_SEP)
    topic_levels = topic.split(_SEP)
    if filter_levels[-1] == _MULTI:
        # "#" also matches its parent level, so the name may be one level shorter (4.7.1.2).
        if len(topic_levels) < len(filter_levels) - 1:
            return False
    elif len(topic_levels) != len(filter_levels):
        return False
    for f, t in zip(filter_levels, topic_levels, strict=False):
        if f != t and f != _SINGLE:
            return f == _MULTI
    return True


def _check_string(value: str, code: ReasonCode, what: str) -> None:
    """Raise ``code`` if ``value`` is empty, has U+0000, is not UTF-8 encodable or is too long."""
    if not value:
        raise RemoteProtocolError(code, f"empty {what}")  # [MQTT-4.7.3-1]
    if "\x00" in value:
        raise RemoteProtocolError(code, f"U+0000 in {what} {_show(value)}")  # [MQTT-4.7.3-2]
    if len(value) <= _ALWAYS_SHORT and value.isascii():
        return
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        # Only lone surrogates fail to encode; they are not well-formed UTF-8 [MQTT-1.5.4-1].
        raise RemoteProtocolError(code, f"{what} is not valid UTF-8: {_show(value)}") from exc
    if size > MAX_TOPIC_BYTES:
        raise RemoteProtocolError(code, f"{what} is {size} bytes, over {MAX_TOPIC_BYTES}")


def _check_wildcards(topic_filter: str) -> None:
    """Raise Topic Filter invalid unless every wildcard stands alone in its level."""
    if _SINGLE not in topic_filter and _MULTI not in topic_filter:
        return
    levels = topic_filter.split(_SEP)
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if _MULTI in level and (level != _MULTI or i != last):
            raise RemoteProtocolError(
                ReasonCode.TOPIC_FILTER_INVALID,
                f"'#' must be the whole last level in {_show(topic_filter)}",  # [MQTT-4.7.1-1]
            )
        if _SINGLE in level and level != _SINGLE:
            raise RemoteProtocolError(
                ReasonCode.TOPIC_FILTER_INVALID,
                f"'+' must be a whole level in {_show(topic_filter)}",  # [MQTT-4.7.1-2]
            )


def _show(value: str) -> str:
    """``repr`` of ``value``, shortened so an error message stays small."""
    if len(value) > _SHOWN_CHARS:
        return repr(value[:_SHOWN_CHARS]) + "..."
    return repr(value)
