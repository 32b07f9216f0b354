"""The subscription index: trie matching, match cache, shared groups, pruning."""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wrenmq.broker.subs as subs_module
from wrenmq.broker.subs import Match, SharedGroup, SubscriptionIndex
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.topics import parse_shared, topic_matches
from wrenmq.errors import RemoteProtocolError

Index = SubscriptionIndex[str, int]


def normal_set(index: Index, topic: str) -> set[tuple[str, int, str]]:
    return set(index.match(topic).normal)


def matched_filters(index: Index, topic: str) -> set[str]:
    return {f for _, _, f in index.match(topic).normal}


def groups_of(match: Match[str, int]) -> dict[tuple[str, str], tuple[tuple[str, int], ...]]:
    return {(g.name, g.topic_filter): g.members for g in match.shared}


def always(_key: str) -> bool:
    return True


# ---------------------------------------------------------------------------------------------
# Matching tables: (filter, topic, matches)

MATCH_TABLE = [
    # plain
    ("a", "a", True),
    ("a", "b", False),
    ("a/b", "a/b", True),
    ("a/b", "a", False),
    ("a", "a/b", False),
    ("a/b/c", "a/b/c", True),
    ("A", "a", False),
    # + matches exactly one level, possibly empty
    ("+", "a", True),
    ("+", "a/b", False),
    ("+", "", True),
    ("a/+", "a/b", True),
    ("a/+", "a", False),
    ("a/+", "a/", True),
    ("a/+", "a/b/c", False),
    ("+/b", "a/b", True),
    ("+/b", "/b", True),
    ("+/+", "/", True),
    ("a/+/c", "a/x/c", True),
    ("a/+/c", "a/x/d", False),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    # # matches the parent level and every child level
    ("#", "a", True),
    ("#", "a/b/c", True),
    ("#", "/", True),
    ("a/#", "a", True),  # parent match
    ("a/#", "a/", True),
    ("a/#", "a/b", True),
    ("a/#", "a/b/c/d", True),
    ("a/#", "b", False),
    ("a/#", "ab", False),
    ("a/b/#", "a", False),
    ("a/b/#", "a/b", True),
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("+/#", "a", True),
    ("+/#", "a/b/c", True),
    ("a/+/#", "a", False),
    ("a/+/#", "a/b", True),
    # empty levels
    ("/", "/", True),
    ("/", "", False),
    ("a//b", "a//b", True),
    ("a//b", "a/b", False),
    ("a/+/b", "a//b", True),
    ("/#", "/", True),
    ("/#", "/a", True),
    ("/#", "a", False),
    ("//", "//", True),
    ("+/+/+", "//", True),
    # $-topics [MQTT-4.7.2-1]
    ("#", "$SYS", False),
    ("#", "$SYS/broker/uptime", False),
    ("+", "$SYS", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("+/#", "$SYS/x", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/+", "$SYS/x", True),
    ("$SYS", "$SYS", True),
    ("a/#", "a/$x", True),  # only the first level counts
    ("a/+", "a/$x", True),
    ("#", "a$", True),
    ("#", "x/$SYS", True),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCH_TABLE)
def test_match_table(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected  # the table itself agrees with codec
    index: Index = SubscriptionIndex()
    index.add("c1", topic_filter, 1)
    assert normal_set(index, topic) == ({("c1", 1, topic_filter)} if expected else set())


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCH_TABLE)
def test_match_table_shared(topic_filter: str, topic: str, expected: bool) -> None:
    index: Index = SubscriptionIndex()
    index.add("c1", f"$share/g/{topic_filter}", 1)
    match = index.match(topic)
    assert match.normal == ()
    assert groups_of(match) == ({("g", topic_filter): (("c1", 1),)} if expected else {})


def test_all_table_filters_together() -> None:
    index: Index = SubscriptionIndex()
    filters = sorted({f for f, _, _ in MATCH_TABLE})
    for f in filters:
        index.add("c", f, 0)
    for topic in {t for _, t, _ in MATCH_TABLE}:
        assert matched_filters(index, topic) == {f for f in filters if topic_matches(f, topic)}


def test_no_match_is_empty() -> None:
    index: Index = SubscriptionIndex()
    assert index.match("a") == Match((), ())
    index.add("c", "b", 1)
    match = index.match("a")
    assert match.normal == ()
    assert match.shared == ()


def test_match_is_immutable() -> None:
    index: Index = SubscriptionIndex()
    index.add("c", "a", 1)
    match = index.match("a")
    with pytest.raises(AttributeError):
        match.normal = ()  # type: ignore[misc]
    assert not hasattr(match, "__dict__")


def test_overlapping_subscriptions_of_one_key_give_one_entry_each() -> None:
    index: Index = SubscriptionIndex()
    index.add("c1", "a/b", 1)
    index.add("c1", "a/+", 2)
    index.add("c1", "a/#", 3)
    index.add("c1", "#", 4)
    index.add("c2", "a/b", 5)
    index.add("c1", "x/#", 6)
    match = index.match("a/b")
    assert len(match.normal) == 5
    assert set(match.normal) == {
        ("c1", 1, "a/b"),
        ("c1", 2, "a/+"),
        ("c1", 3, "a/#"),
        ("c1", 4, "#"),
        ("c2", 5, "a/b"),
    }


def test_invalid_filter_is_rejected_and_nothing_changes() -> None:
    index: Index = SubscriptionIndex()
    for bad in ["", "a/#/b", "a+", "$share/g", "$share//a", "$share/g+/a", "a\x00"]:
        with pytest.raises(RemoteProtocolError) as info:
            index.add("c", bad, 1)
        assert info.value.reason_code == ReasonCode.TOPIC_FILTER_INVALID
    assert len(index) == 0
    assert index.subscriptions_of("c") == {}
    assert index.node_count() == 1


def test_negative_cache_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_cache"):
        SubscriptionIndex(max_cache=-1)


# ---------------------------------------------------------------------------------------------
# Replace, remove, bookkeeping


def test_add_replaces_same_key_and_filter() -> None:
    index: Index = SubscriptionIndex()
    assert index.add("c", "a/+", 1) is True
    assert index.add("c", "a/+", 2) is False
    assert len(index) == 1
    assert index.match("a/b").normal == (("c", 2, "a/+"),)
    assert index.subscriptions_of("c") == {"a/+": 2}
    assert index.add("d", "a/+", 3) is True  # another key, same filter: new
    assert index.add("c", "$share/g/a/+", 4) is True  # same key, shared: another subscription
    assert len(index) == 3


def test_replace_updates_cached_result() -> None:
    index: Index = SubscriptionIndex()
    for f in ["a", "a/#"]:
        index.add("c", f, 1)
        assert index.match("a").normal == (("c", 1, f),)
        index.add("c", f, 2)
        assert index.match("a").normal == (("c", 2, f),)
        index.remove("c", f)


def test_shared_replace_keeps_position_and_updates_value() -> None:
    index: Index = SubscriptionIndex()
    for key in ["a", "b", "c"]:
        index.add(key, "$share/g/t", 1)
    (group,) = index.match("t").shared
    index.add("b", "$share/g/t", 9)
    assert group.members == (("a", 1), ("b", 9), ("c", 1))
    assert index.match("t").shared[0].members == (("a", 1), ("b", 9), ("c", 1))
    assert len(index) == 3


def test_subscriptions_of_and_filters() -> None:
    index: Index = SubscriptionIndex()
    index.add("c1", "a", 1)
    index.add("c1", "$share/g/a", 2)
    index.add("c2", "b/#", 3)
    assert index.subscriptions_of("c1") == {"a": 1, "$share/g/a": 2}
    assert index.subscriptions_of("nobody") == {}
    copy = index.subscriptions_of("c1")
    copy["x"] = 0
    assert "x" not in index.subscriptions_of("c1")
    assert sorted(index.filters()) == [("$share/g/a", "c1", 2), ("a", "c1", 1), ("b/#", "c2", 3)]


def test_remove() -> None:
    index: Index = SubscriptionIndex()
    index.add("c1", "a/+", 1)
    index.add("c2", "a/+", 2)
    index.add("c1", "$share/g/a/+", 3)
    assert index.remove("c1", "a/+") is True
    assert index.remove("c1", "a/+") is False
    assert index.remove("c3", "a/+") is False
    assert index.remove("c2", "a/b") is False
    assert index.remove("c2", "$share/oops") is False  # never added: not even parsed
    assert index.match("a/x").normal == (("c2", 2, "a/+"),)
    assert groups_of(index.match("a/x")) == {("g", "a/+"): (("c1", 3),)}
    assert len(index) == 2
    assert index.remove("c1", "$share/g/a/+") is True
    assert index.match("a/x").shared == ()
    assert index.subscriptions_of("c1") == {}


def test_remove_all() -> None:
    index: Index = SubscriptionIndex()
    for f in ["a", "a/#", "+/b", "$share/g/a", "$share/h/a/#"]:
        index.add("c1", f, 1)
    index.add("c2", "a", 2)
    index.add("c2", "$share/g/a", 2)
    assert index.remove_all("c1") == 5
    assert index.remove_all("c1") == 0
    assert len(index) == 2
    match = index.match("a")
    assert match.normal == (("c2", 2, "a"),)
    assert groups_of(match) == {("g", "a"): (("c2", 2),)}
    assert index.remove_all("c2") == 2
    assert len(index) == 0
    assert index.node_count() == 1


def test_trie_is_pruned() -> None:
    index: Index = SubscriptionIndex()
    assert index.node_count() == 1
    index.add("c", "a/b/c/d", 1)
    assert index.node_count() == 5
    index.add("c", "a/b/x", 1)
    assert index.node_count() == 6
    index.add("c", "a/+/#", 1)
    index.add("c", "$share/g/a/b", 1)  # node a/b exists already
    assert index.node_count() == 8
    index.remove("c", "a/b/c/d")
    assert index.node_count() == 6
    index.remove("c", "a/b/x")
    assert index.node_count() == 5  # a/b still holds the shared group
    index.remove("c", "$share/g/a/b")
    assert index.node_count() == 4
    index.remove("c", "a/+/#")
    assert index.node_count() == 1


def test_interior_subscription_survives_pruning_below() -> None:
    index: Index = SubscriptionIndex()
    index.add("c", "a", 1)
    index.add("c", "a/b", 2)
    index.remove("c", "a/b")
    assert index.node_count() == 2
    assert index.match("a").normal == (("c", 1, "a"),)


def test_churn_does_not_grow_the_trie() -> None:
    index: Index = SubscriptionIndex()
    index.add("keep", "devices/+/status", 0)
    base = index.node_count()
    for i in range(200):
        key = f"dev{i}"
        index.add(key, f"devices/{i}/cmd", i)
        index.add(key, f"devices/{i}/#", i)
        index.add(key, f"$share/g{i}/devices/{i}", i)
        index.match(f"devices/{i}/cmd")
        index.remove_all(key)
    assert index.node_count() == base
    assert len(index) == 1


# ---------------------------------------------------------------------------------------------
# Cache


def test_cache_invalidated_on_add_and_remove() -> None:
    for new_filter in ["a/b", "a/+", "#", "$share/g/a/b", "$share/g/+/b"]:
        index: Index = SubscriptionIndex()
        index.add("c1", "a/b", 1)
        assert len(index.match("a/b").normal) == 1
        assert index.match("a/b") is index.match("a/b")  # cached
        index.add("c2", new_filter, 2)
        match = index.match("a/b")
        assert len(match.normal) + len(match.shared) == 2, new_filter
        index.remove("c2", new_filter)
        assert index.match("a/b").normal == (("c1", 1, "a/b"),)
        assert index.match("a/b").shared == ()


def test_exact_filter_change_keeps_other_cached_topics() -> None:
    index: Index = SubscriptionIndex()
    index.add("c", "x/#", 1)
    cached = index.match("x/y")
    index.add("d", "q/r", 2)  # cannot affect x/y
    index.remove("d", "q/r")
    assert index.match("x/y") is cached
    index.add("d", "x/y", 2)
    assert index.match("x/y") is not cached
    assert len(index.match("x/y").normal) == 2


def test_group_membership_changes_visible_through_cached_match() -> None:
    index: Index = SubscriptionIndex()
    index.add("a", "$share/g/t/+", 1)
    cached = index.match("t/x")
    index.add("b", "$share/g/t/+", 2)
    assert index.match("t/x") is cached  # the group is live: no invalidation needed
    assert cached.shared[0].members == (("a", 1), ("b", 2))
    index.remove("a", "$share/g/t/+")
    assert index.match("t/x").shared[0].members == (("b", 2),)
    index.remove("b", "$share/g/t/+")
    assert index.match("t/x").shared == ()


def test_cache_is_bounded() -> None:
    index: Index = SubscriptionIndex(max_cache=8)
    index.add("c", "t/+", 1)
    for i in range(100):
        assert index.match(f"t/{i}").normal == (("c", 1, "t/+"),)
        assert len(index._cache) <= 8
    index.add("c", "t/5", 2)
    assert len(index.match("t/5").normal) == 2


def test_cache_can_be_disabled() -> None:
    index: Index = SubscriptionIndex(max_cache=0)
    index.add("c", "a", 1)
    assert index.match("a").normal == (("c", 1, "a"),)
    assert index._cache == {}


# ---------------------------------------------------------------------------------------------
# Shared groups


def test_round_robin_is_fair_over_three_members() -> None:
    index: Index = SubscriptionIndex()
    for value, key in enumerate(["a", "b", "c"]):
        index.add(key, "$share/g/t", value)
    (group,) = index.match("t").shared
    assert isinstance(group, SharedGroup)
    assert (group.name, group.topic_filter, len(group)) == ("g", "t", 3)
    assert group.members == (("a", 0), ("b", 1), ("c", 2))
    picks = [group.pick(always) for _ in range(9)]
    assert picks == [("a", 0), ("b", 1), ("c", 2)] * 3
    # The cursor lives in the group, so it carries over between matches.
    assert index.match("t").shared[0].pick(always) == ("a", 0)


def test_round_robin_skips_ineligible_members() -> None:
    index: Index = SubscriptionIndex()
    for key in ["a", "b", "c"]:
        index.add(key, "$share/g/t", 0)
    (group,) = index.match("t").shared
    online = {"a", "c"}
    picks = [group.pick(online.__contains__) for _ in range(6)]
    assert picks == [("a", 0), ("c", 0)] * 3
    online = {"b"}
    assert [group.pick(online.__contains__) for _ in range(2)] == [("b", 0), ("b", 0)]
    assert group.pick(lambda _key: False) is None
    online = {"a", "b", "c"}
    counts = Counter(group.pick(online.__contains__) for _ in range(300))
    assert counts == {("a", 0): 100, ("b", 0): 100, ("c", 0): 100}


def test_round_robin_after_member_leaves_and_joins() -> None:
    index: Index = SubscriptionIndex()
    for key in ["a", "b", "c", "d"]:
        index.add(key, "$share/g/t", 0)
    (group,) = index.match("t").shared
    assert [group.pick(always) for _ in range(2)] == [("a", 0), ("b", 0)]
    index.remove("a", "$share/g/t")  # before the cursor: "c" is still next
    assert group.pick(always) == ("c", 0)
    index.remove("d", "$share/g/t")  # the next one leaves: wrap to "b"
    assert group.pick(always) == ("b", 0)
    index.add("e", "$share/g/t", 0)
    assert [group.pick(always) for _ in range(3)] == [("c", 0), ("e", 0), ("b", 0)]


def test_empty_group_pick() -> None:
    group: SharedGroup[str, int] = SharedGroup("g", "t")
    assert group.pick(always) is None
    assert "'g'" in repr(group)


def test_two_groups_on_the_same_filter_are_independent() -> None:
    index: Index = SubscriptionIndex()
    for key in ["a", "b"]:
        index.add(key, "$share/g1/t/+", 1)
    for key in ["x", "y", "z"]:
        index.add(key, "$share/g2/t/+", 2)
    index.add("a", "$share/g1/other", 3)
    match = index.match("t/q")
    assert groups_of(match) == {
        ("g1", "t/+"): (("a", 1), ("b", 1)),
        ("g2", "t/+"): (("x", 2), ("y", 2), ("z", 2)),
    }
    g1, g2 = sorted(match.shared, key=lambda g: g.name)
    assert [g1.pick(always) for _ in range(3)] == [("a", 1), ("b", 1), ("a", 1)]
    assert [g2.pick(always) for _ in range(2)] == [("x", 2), ("y", 2)]
    index.remove_all("x")
    assert groups_of(index.match("t/q"))[("g1", "t/+")] == (("a", 1), ("b", 1))


def test_same_group_name_on_two_filters_are_two_groups() -> None:
    index: Index = SubscriptionIndex()
    index.add("a", "$share/g/t/+", 1)
    index.add("b", "$share/g/t/#", 2)
    assert groups_of(index.match("t/x")) == {
        ("g", "t/+"): (("a", 1),),
        ("g", "t/#"): (("b", 2),),
    }


def test_same_key_in_group_and_as_normal_subscriber() -> None:
    index: Index = SubscriptionIndex()
    index.add("a", "t", 1)
    index.add("a", "$share/g/t", 2)
    index.add("b", "$share/g/t", 3)
    match = index.match("t")
    assert match.normal == (("a", 1, "t"),)
    assert groups_of(match) == {("g", "t"): (("a", 2), ("b", 3))}
    assert len(index) == 3
    index.remove("a", "t")
    assert groups_of(index.match("t")) == {("g", "t"): (("a", 2), ("b", 3))}
    assert index.match("t").normal == ()


# ---------------------------------------------------------------------------------------------
# Property tests against brute force

LEVELS = ["a", "b", "", "$s"]
KEYS = ["k1", "k2", "k3"]


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.sampled_from([*LEVELS, "+"]), min_size=0, max_size=4))
    if draw(st.booleans()) or not "/".join(levels):  # "" is not a filter
        levels.append("#")
    topic_filter = "/".join(levels)
    if draw(st.integers(0, 3)) == 0:
        topic_filter = f"$share/{draw(st.sampled_from(['g', 'h']))}/{topic_filter}"
    return topic_filter


topics = st.lists(st.sampled_from(LEVELS), min_size=1, max_size=5).map("/".join)


def expected_match(
    model: dict[tuple[str, str], int], topic: str
) -> tuple[Counter[tuple[str, int, str]], dict[tuple[str, str], set[tuple[str, int]]]]:
    normal: Counter[tuple[str, int, str]] = Counter()
    shared: dict[tuple[str, str], set[tuple[str, int]]] = {}
    for (key, topic_filter), value in model.items():
        parsed = parse_shared(topic_filter)
        inner = topic_filter if parsed is None else parsed.topic_filter
        if not topic_matches(inner, topic):
            continue
        if parsed is None:
            normal[(key, value, topic_filter)] += 1
        else:
            shared.setdefault((parsed.group, inner), set()).add((key, value))
    return normal, shared


def check_match(index: Index, model: dict[tuple[str, str], int], topic: str) -> None:
    match = index.match(topic)
    normal, shared = expected_match(model, topic)
    assert Counter(match.normal) == normal
    got = groups_of(match)
    assert len(got) == len(match.shared)  # each (name, filter) group at most once
    assert {k: set(v) for k, v in got.items()} == shared


@given(
    subscriptions=st.lists(st.tuples(st.sampled_from(KEYS), filters()), max_size=25),
    probe=st.lists(topics, min_size=1, max_size=10),
)
def test_match_agrees_with_brute_force(
    subscriptions: list[tuple[str, str]], probe: list[str]
) -> None:
    index: Index = SubscriptionIndex()
    model: dict[tuple[str, str], int] = {}
    for value, (key, topic_filter) in enumerate(subscriptions):
        index.add(key, topic_filter, value)
        model[(key, topic_filter)] = value
    assert len(index) == len(model)
    for topic in probe:
        check_match(index, model, topic)
        check_match(index, model, topic)  # from the cache this time


operations = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(KEYS), filters()),
    st.tuples(st.just("remove"), st.sampled_from(KEYS), filters()),
    st.tuples(st.just("remove_all"), st.sampled_from(KEYS), st.just("")),
    st.tuples(st.just("match"), st.just(""), topics),
)


@settings(max_examples=300)
@given(ops=st.lists(operations, max_size=60), max_cache=st.sampled_from([0, 1, 3, 10_000]))
def test_churn_agrees_with_brute_force(ops: list[tuple[str, str, str]], max_cache: int) -> None:
    index: Index = SubscriptionIndex(max_cache=max_cache)
    model: dict[tuple[str, str], int] = {}
    seen_topics: list[str] = []
    for n, (op, key, arg) in enumerate(ops):
        if op == "add":
            assert index.add(key, arg, n) is ((key, arg) not in model)
            model[(key, arg)] = n
        elif op == "remove":
            assert index.remove(key, arg) is ((key, arg) in model)
            model.pop((key, arg), None)
        elif op == "remove_all":
            mine = [k for k in model if k[0] == key]
            assert index.remove_all(key) == len(mine)
            for k in mine:
                del model[k]
        else:
            seen_topics.append(arg)
        for topic in seen_topics[-3:]:
            check_match(index, model, topic)
        assert len(index) == len(model)
    assert sorted((k, f, v) for f, k, v in index.filters()) == sorted(
        (k, f, v) for (k, f), v in model.items()
    )
    for key in KEYS:
        index.remove_all(key)
    assert index.node_count() == 1


# ---------------------------------------------------------------------------------------------
# Layering


def test_subs_module_imports_only_stdlib_and_codec() -> None:
    tree = ast.parse(Path(subs_module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    for name in imported:
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or name.startswith("wrenmq.codec."), name
        assert top not in {"asyncio", "socket", "ssl", "selectors", "time", "logging"}, name
