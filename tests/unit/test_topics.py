from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import wrenmq.codec.topics as topics_module
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.topics import (
    MAX_TOPIC_BYTES,
    SharedFilter,
    is_wildcard,
    parse_shared,
    split_levels,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)
from wrenmq.errors import RemoteProtocolError

NAME_INVALID = ReasonCode.TOPIC_NAME_INVALID
FILTER_INVALID = ReasonCode.TOPIC_FILTER_INVALID

# ---------------------------------------------------------------------------------------------
# Topic names


VALID_NAMES = [
    "a",
    "/",
    "//",
    "/a",
    "a/",
    "a//b",
    " ",
    "sport/tennis/player1",
    "$SYS/broker/uptime",
    "$share/g/t",  # only a filter gives "$share/" a meaning
    "caf\u00e9/\u6771\u4eac/\U0001f600",
    "a" * MAX_TOPIC_BYTES,
    "\u00e9" * (MAX_TOPIC_BYTES // 2) + "a",  # exactly 65535 UTF-8 bytes
    "\U0001f600" * 16383 + "abc",  # exactly 65535 UTF-8 bytes, past the all-ASCII shortcut
]

INVALID_NAMES = [
    pytest.param("", id="MQTT-4.7.3-1-empty"),
    pytest.param("+", id="MQTT-3.3.2-2-plus"),
    pytest.param("#", id="MQTT-3.3.2-2-hash"),
    pytest.param("a/+", id="MQTT-3.3.2-2-plus-level"),
    pytest.param("a/#", id="MQTT-3.3.2-2-hash-level"),
    pytest.param("a+b", id="MQTT-3.3.2-2-plus-inside"),
    pytest.param("a#", id="MQTT-3.3.2-2-hash-inside"),
    pytest.param("\x00", id="MQTT-4.7.3-2-nul"),
    pytest.param("a/\x00/b", id="MQTT-4.7.3-2-nul-inside"),
    pytest.param("a\ud800", id="MQTT-1.5.4-1-lone-surrogate"),
    pytest.param("a" * (MAX_TOPIC_BYTES + 1), id="MQTT-4.7.3-3-ascii-too-long"),
    pytest.param("\u00e9" * (MAX_TOPIC_BYTES // 2 + 1), id="MQTT-4.7.3-3-utf8-too-long"),
    pytest.param("\U0001f600" * 16384, id="MQTT-4.7.3-3-astral-too-long"),
]


@pytest.mark.parametrize("topic", VALID_NAMES, ids=lambda t: repr(t[:20]))
def test_valid_topic_names(topic: str) -> None:
    validate_topic_name(topic)


@pytest.mark.parametrize("topic", INVALID_NAMES)
def test_invalid_topic_names(topic: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        validate_topic_name(topic)
    assert exc.value.reason_code == NAME_INVALID


def test_long_invalid_name_message_is_short() -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        validate_topic_name("+" * 100_000)
    assert len(str(exc.value)) < 300


# ---------------------------------------------------------------------------------------------
# Topic filters


VALID_FILTERS = [
    "a",
    "/",
    "a//b",
    "#",
    "+",
    "+/+",
    "/+",
    "+/",
    "/#",
    "a/#",
    "a/+/b",
    "+/tennis/#",
    "sport/tennis/player1/#",
    "sport/+/player1",
    "$SYS/#",
    "$SYS/+/Clients",
    "$share",  # not "$share/": an ordinary filter
    "$sharex/a",
    "$share/g/#",
    "$share/g/+/a",
    "$share/g//",
    "a" * MAX_TOPIC_BYTES,
    "\u00e9" * (MAX_TOPIC_BYTES // 2 - 1) + "a/#",  # exactly 65535 UTF-8 bytes
]

INVALID_FILTERS = [
    pytest.param("", id="MQTT-4.7.3-1-empty"),
    pytest.param("\x00", id="MQTT-4.7.3-2-nul"),
    pytest.param("a/\x00/#", id="MQTT-4.7.3-2-nul-with-wildcard"),
    pytest.param("a\ud800/#", id="MQTT-1.5.4-1-lone-surrogate"),
    pytest.param("a" * (MAX_TOPIC_BYTES + 1), id="MQTT-4.7.3-3-too-long"),
    pytest.param("\u00e9" * (MAX_TOPIC_BYTES // 2 + 1), id="MQTT-4.7.3-3-utf8-too-long"),
    pytest.param("sport/tennis#", id="MQTT-4.7.1-1-hash-not-alone"),
    pytest.param("sport/tennis/#/ranking", id="MQTT-4.7.1-1-hash-not-last"),
    pytest.param("#/", id="MQTT-4.7.1-1-hash-then-empty-level"),
    pytest.param("##", id="MQTT-4.7.1-1-double-hash"),
    pytest.param("#/#", id="MQTT-4.7.1-1-two-hashes"),
    pytest.param("a#/b", id="MQTT-4.7.1-1-hash-inside-first"),
    pytest.param("sport+", id="MQTT-4.7.1-2-plus-not-alone"),
    pytest.param("sport/+tennis", id="MQTT-4.7.1-2-plus-prefix"),
    pytest.param("++", id="MQTT-4.7.1-2-double-plus"),
    pytest.param("+#", id="MQTT-4.7.1-2-plus-hash"),
    pytest.param("a/+/b+", id="MQTT-4.7.1-2-plus-later"),
    pytest.param("$share/", id="MQTT-4.8.2-1-no-group"),
    pytest.param("$share//a", id="MQTT-4.8.2-1-empty-group"),
    pytest.param("$share/g", id="MQTT-4.8.2-2-no-slash-after-group"),
    pytest.param("$share/g/", id="MQTT-4.8.2-2-empty-inner-filter"),
    pytest.param("$share/+/a", id="MQTT-4.8.2-2-plus-group"),
    pytest.param("$share/#/a", id="MQTT-4.8.2-2-hash-group"),
    pytest.param("$share/g+/a", id="MQTT-4.8.2-2-plus-inside-group"),
    pytest.param("$share/#", id="MQTT-4.8.2-2-hash-only"),
    pytest.param("$share/g/a#", id="MQTT-4.7.1-1-shared-inner-hash"),
    pytest.param("$share/g/#/a", id="MQTT-4.7.1-1-shared-inner-hash-not-last"),
    pytest.param("$share/g/a+", id="MQTT-4.7.1-2-shared-inner-plus"),
    pytest.param("$share/g/a\x00", id="MQTT-4.7.3-2-shared-nul"),
    pytest.param("$share/g/" + "a" * (MAX_TOPIC_BYTES - 8), id="MQTT-4.7.3-3-shared-too-long"),
]


@pytest.mark.parametrize("topic_filter", VALID_FILTERS, ids=lambda t: repr(t[:20]))
def test_valid_topic_filters(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize("topic_filter", INVALID_FILTERS)
def test_invalid_topic_filters(topic_filter: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        validate_topic_filter(topic_filter)
    assert exc.value.reason_code == FILTER_INVALID


def test_shared_filter_length_counts_prefix_and_group() -> None:
    longest = "$share/g/" + "a" * (MAX_TOPIC_BYTES - 9)
    assert len(longest.encode()) == MAX_TOPIC_BYTES
    validate_topic_filter(longest)


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("a", False),
        ("a/b", False),
        ("$SYS/x", False),
        ("+", True),
        ("#", True),
        ("a/+/b", True),
        ("a/#", True),
        ("$share/g/a", False),
        ("$share/g/+", True),
    ],
)
def test_is_wildcard(topic_filter: str, expected: bool) -> None:
    assert is_wildcard(topic_filter) is expected


@pytest.mark.parametrize(
    ("topic", "levels"),
    [
        ("a", ["a"]),
        ("/", ["", ""]),
        ("/a", ["", "a"]),
        ("a/", ["a", ""]),
        ("a//b", ["a", "", "b"]),
        ("sport/tennis/player1", ["sport", "tennis", "player1"]),
    ],
)
def test_split_levels(topic: str, levels: list[str]) -> None:
    assert split_levels(topic) == levels


# ---------------------------------------------------------------------------------------------
# Shared subscriptions (MQTT 5 section 4.8.2)


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("a/b", None),
        ("#", None),
        ("$share", None),
        ("$SHARE/g/a", None),  # the prefix is case-sensitive
        ("$sharegroup/a", None),
        ("$share/consumer1/sport/tennis/+", SharedFilter("consumer1", "sport/tennis/+")),
        ("$share/g/#", SharedFilter("g", "#")),
        ("$share/g//", SharedFilter("g", "/")),
        ("$share/g//a", SharedFilter("g", "/a")),
        ("$share/g/$SYS/#", SharedFilter("g", "$SYS/#")),
        ("$share/$g/a", SharedFilter("$g", "a")),
        ("$share/caf\u00e9/a", SharedFilter("caf\u00e9", "a")),
        ("$share/g/$share/h/a", SharedFilter("g", "$share/h/a")),
    ],
)
def test_parse_shared_valid(topic_filter: str, expected: SharedFilter | None) -> None:
    assert parse_shared(topic_filter) == expected


@pytest.mark.parametrize(
    "topic_filter",
    [
        "$share/",
        "$share//a",
        "$share/g",
        "$share/g/",
        "$share/+",
        "$share/+/a",
        "$share/#/a",
        "$share/g#/a",
        "$share/a+b/c",
        "$share/g/a/#/b",
        "$share/g/+a",
        "$share/g/\x00",
        "$share/g/" + "a" * MAX_TOPIC_BYTES,
    ],
)
def test_parse_shared_invalid(topic_filter: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        parse_shared(topic_filter)
    assert exc.value.reason_code == FILTER_INVALID


def test_shared_filter_is_frozen_and_slotted() -> None:
    shared = SharedFilter(group="g", topic_filter="a")
    with pytest.raises(AttributeError):
        shared.group = "h"  # type: ignore[misc]
    assert not hasattr(shared, "__dict__")


# ---------------------------------------------------------------------------------------------
# Matching: examples from MQTT 5 sections 4.7.1 and 4.7.2


MATCH_CASES = [
    # 4.7.1.2 multi-level wildcard
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/tennis/player1/#", "sport/tennis/player2", False),
    ("sport/tennis/player1/#", "sport/tennis", False),
    ("sport/#", "sport", True),
    ("sport/#", "sport/", True),
    ("sport/#", "sports", False),
    ("#", "sport/tennis/player1", True),
    ("#", "/", True),
    ("#", "/finance", True),
    ("/#", "/finance", True),
    ("/#", "finance", False),
    # 4.7.1.3 single-level wildcard
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/tennis/+", "sport/tennis", False),
    ("sport/tennis/+", "sport/tennis/", True),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+", "finance", True),
    ("+/tennis/#", "sport/tennis/player1/ranking", True),
    ("+/tennis/#", "sport/tennis", True),
    ("+/tennis/#", "sport/golf", False),
    ("sport/+/player1", "sport/tennis/player1", True),
    ("sport/+/player1", "sport//player1", True),
    ("+/#", "a", True),
    ("+/+/#", "a", False),
    # empty levels are real levels
    ("a//b", "a//b", True),
    ("a//b", "a/b", False),
    ("a/+/b", "a//b", True),
    ("+", "", True),
    ("/", "/", True),
    ("+/", "/", True),
    ("+/", "a", False),
    # no wildcards: exact comparison, case-sensitive
    ("sport/tennis", "sport/tennis", True),
    ("sport/tennis", "Sport/Tennis", False),
    ("sport/tennis", "sport/tennis/", False),
    ("a", "a/", False),
    # 4.7.2 topics beginning with $ [MQTT-4.7.2-1]
    ("#", "$SYS/x", False),
    ("#", "$SYS", False),
    ("+", "$SYS", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("+/#", "$SYS/monitor", False),
    ("$SYS/#", "$SYS/x", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/Clients", "$SYS/monitor/Clients", True),
    ("$+/x", "$a/x", False),  # not a valid filter, but "$+" is not a wildcard level anyway
    ("a/#", "a/$SYS", True),  # only the first level is protected
    ("a/+", "a/$x", True),
    ("+/$x", "a/$x", True),
    ("#", "a$", True),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCH_CASES)
def test_topic_matches_spec_examples(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


# ---------------------------------------------------------------------------------------------
# Properties against an obviously-correct reference matcher


def reference_levels_match(filter_levels: list[str], topic_levels: list[str]) -> bool:
    if not filter_levels:
        return not topic_levels
    head, *rest = filter_levels
    if head == "#":
        return True  # the parent level and everything below it
    if not topic_levels:
        return False
    if head == "+" or head == topic_levels[0]:
        return reference_levels_match(rest, topic_levels[1:])
    return False


def reference_matches(topic_filter: str, topic: str) -> bool:
    filter_levels = topic_filter.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    return reference_levels_match(filter_levels, topic.split("/"))


def reference_filter_is_valid(topic_filter: str) -> bool:
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


NAME_LEVELS = st.sampled_from(["", "a", "b", "$x", "$SYS"])
FILTER_LEVELS = st.sampled_from(["", "a", "b", "$x", "$SYS", "+"])

topic_names = st.lists(NAME_LEVELS, min_size=1, max_size=5).map("/".join).filter(bool)


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FILTER_LEVELS, min_size=0, max_size=5))
    if draw(st.booleans()) or not levels:
        levels.append("#")
    topic_filter = "/".join(levels)
    return topic_filter if topic_filter else "#"


@given(topic_filters(), topic_names)
@example("#", "$x")
@example("+/#", "$x/a")
@example("$x/#", "$x")
@example("a/#", "a")
@example("a/+", "a/")
@example("+/+", "/")
@example("/+", "/a")
def test_topic_matches_agrees_with_reference(topic_filter: str, topic: str) -> None:
    validate_topic_filter(topic_filter)
    validate_topic_name(topic)
    assert topic_matches(topic_filter, topic) is reference_matches(topic_filter, topic)


@given(topic_names)
def test_every_name_matches_itself_and_hash_unless_dollar(topic: str) -> None:
    assert topic_matches(topic, topic)
    assert topic_matches("#", topic) is (not topic.startswith("$"))


@given(topic_names)
def test_replacing_any_level_by_plus_still_matches(topic: str) -> None:
    levels = topic.split("/")
    for i in range(len(levels)):
        pattern = "/".join([*levels[:i], "+", *levels[i + 1 :]])
        expected = not (i == 0 and topic.startswith("$"))
        assert topic_matches(pattern, topic) is expected
        prefix = "/".join([*levels[:i], "#"])
        assert topic_matches(prefix, topic) is expected


@given(topic_names, topic_names)
def test_filter_without_wildcards_matches_only_itself(topic_filter: str, topic: str) -> None:
    assert topic_matches(topic_filter, topic) is (topic_filter == topic)


@given(topic_filters())
def test_generated_filters_are_valid_and_shareable(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)
    shared = "$share/group/" + topic_filter
    validate_topic_filter(shared)
    assert parse_shared(shared) == SharedFilter("group", topic_filter)


# Garbage either validates or raises RemoteProtocolError with the right code, and nothing else.
GARBAGE = st.text(
    alphabet=st.sampled_from(["a", "/", "+", "#", "$", "\x00", "\u00e9"]), max_size=12
)


@given(GARBAGE)
@example("")
@example("a/#/")
@example("+/+/#")
def test_filter_validation_agrees_with_reference(topic_filter: str) -> None:
    try:
        validate_topic_filter(topic_filter)
    except RemoteProtocolError as exc:
        assert exc.reason_code == FILTER_INVALID
        assert not reference_filter_is_valid(topic_filter)
    else:
        assert reference_filter_is_valid(topic_filter)


@given(GARBAGE)
def test_name_validation_agrees_with_reference(topic: str) -> None:
    expected = bool(topic) and not any(c in topic for c in "+#\x00")
    try:
        validate_topic_name(topic)
    except RemoteProtocolError as exc:
        assert exc.reason_code == NAME_INVALID
        assert not expected
    else:
        assert expected


SHARE_PIECES = st.sampled_from(["$share/", "g", "/", "+", "#", "a", "\x00"])


@given(st.lists(SHARE_PIECES, max_size=8).map("".join))
def test_shared_parsing_raises_only_topic_filter_invalid(topic_filter: str) -> None:
    try:
        result = parse_shared(topic_filter)
    except RemoteProtocolError as exc:
        assert exc.reason_code == FILTER_INVALID
        return
    if result is None:
        assert not topic_filter.startswith("$share/")
    else:
        assert topic_filter == f"$share/{result.group}/{result.topic_filter}"
        assert result.group and not any(c in result.group for c in "/+#")
        # the inner filter is an ordinary one, even if it starts with "$share/" again
        assert reference_filter_is_valid(result.topic_filter)


# ---------------------------------------------------------------------------------------------
# Layering: codec/ stays stdlib-only, without IO or clock


def test_topics_module_imports_only_stdlib_and_codec() -> None:
    source = Path(topics_module.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)
    forbidden = {"asyncio", "socket", "ssl", "selectors", "time"}
    for name in imported:
        top = name.split(".")[0]
        assert top not in forbidden, name
        if top != "wrenmq":
            assert top in sys.stdlib_module_names or top == "__future__", name
        else:
            assert name in {"wrenmq.codec.reason_codes", "wrenmq.errors"}, name
