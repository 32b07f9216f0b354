"""Mosquitto ACL files (broker/auth/acl.py), the ACL authorizer and the authorization chain.

The READ / WRITE expectations of ``SPEC`` below were checked against a real Mosquitto 2.0.11 with
the same file (paho clients publishing and subscribing to ``#``), except where a comment says we
differ on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from wrenmq.broker.auth import acl as acl_mod
from wrenmq.broker.auth.acl import Access, AclFile, filter_covered
from wrenmq.broker.auth.base import AclAuthorizer, AuthChain
from wrenmq.broker.hooks import Verdict
from wrenmq.errors import ConfigError

R, W, S = Access.READ, Access.WRITE, Access.SUBSCRIBE

SPEC = """\
# anonymous clients
topic read anon/#
topic write anonw/#

user alice
topic readwrite a/+
topic deny a/secret
topic read r/#
topic write w/#
topic dev-%c/x
pattern readwrite devices/%c/#
pattern read users/%u/+

user sp ace
topic read space/#

user alice
topic read more/#
"""


@pytest.fixture(scope="module")
def spec() -> AclFile:
    return AclFile.loads(SPEC, source="spec.acl")


CASES = [
    # (client id, username, topic, access, allowed)
    # anonymous: the lines before the first `user`, plus patterns
    ("c1", None, "anon/x", R, True),
    ("c1", None, "anon/x", W, False),
    ("c1", None, "anonw/x", W, True),
    ("c1", None, "anonw/x", R, False),
    ("c1", None, "a/b", R, False),
    ("c1", None, "devices/c1/x", W, True),  # patterns apply to anonymous clients too
    ("c1", None, "users/bob/x", R, False),  # ...but %u needs a username
    # alice: her sections (both add up) and patterns, not the anonymous lines
    ("c1", "alice", "anon/x", R, False),
    ("c1", "alice", "a/b", R, True),
    ("c1", "alice", "a/b", W, True),
    ("c1", "alice", "a/b/c", R, False),
    ("c1", "alice", "a/secret", R, False),  # deny wins over readwrite a/+
    ("c1", "alice", "a/secret", W, False),
    ("c1", "alice", "r/x/y", R, True),
    ("c1", "alice", "r/x/y", W, False),
    ("c1", "alice", "w/x", W, True),
    ("c1", "alice", "w/x", R, False),
    ("c1", "alice", "more/x", R, True),
    ("c1", "alice", "dev-%c/x", R, True),  # no substitution in `topic` lines
    ("c1", "alice", "dev-c1/x", R, False),
    ("c1", "alice", "users/alice/x", R, True),
    ("c1", "alice", "users/alice/x", W, False),
    ("c1", "alice", "users/bob/x", R, False),
    # a username with a section of its own; spaces are part of the name
    ("c1", "sp ace", "space/x", R, True),
    ("c1", "sp ace", "a/b", R, False),
    # a username without a section: patterns only
    ("c1", "bob", "users/bob/x", R, True),
    ("c1", "bob", "users/bob/x/y", R, False),
    ("c1", "bob", "devices/c1", R, True),  # "#" also matches the parent level
    ("c1", "bob", "devices/c1/x/y", W, True),
    ("c2", "bob", "devices/c1/x", R, False),
    ("c1", "bob", "anon/x", R, False),
    ("c1", "bob", "a/b", R, False),
]


@pytest.mark.parametrize(("client_id", "username", "topic", "access", "allowed"), CASES)
def test_read_write(
    spec: AclFile, client_id: str, username: str | None, topic: str, access: Access, allowed: bool
) -> None:
    assert spec.check(client_id, username, topic, access) is allowed


SUBSCRIBE_CASES = [
    # covered by a read rule: allowed
    ("c1", "alice", "a/b", True),
    ("c1", "alice", "a/+", True),
    ("c1", "alice", "r/#", True),
    ("c1", "alice", "r/+/x", True),
    ("c1", "alice", "r", True),  # r/# matches r itself
    ("c1", "bob", "devices/c1/#", True),
    ("c1", "bob", "devices/c1/+/z", True),
    ("c1", "bob", "users/bob/+", True),
    ("c1", None, "anon/#", True),
    ("c1", "alice", "$share/group/a/b", True),  # the group does not matter, the filter does
    # only partly covered: refused (Mosquitto 2.0.11 grants these and filters per message)
    ("c1", "alice", "a/#", False),
    ("c1", "alice", "#", False),
    ("c1", "alice", "+/b", False),
    ("c1", "bob", "devices/+/x", False),
    ("c1", "bob", "users/+/x", False),
    ("c1", None, "#", False),
    # write-only rules do not allow subscribing
    ("c1", "alice", "w/x", False),
    ("c1", None, "anonw/x", False),
    # a deny rule that covers the filter refuses it
    ("c1", "alice", "a/secret", False),
    ("c1", "alice", "$share/g/a/secret", False),
    ("c1", "alice", "$share//a/b", False),  # malformed shared filter
]


@pytest.mark.parametrize(("client_id", "username", "topic_filter", "allowed"), SUBSCRIBE_CASES)
def test_subscribe(
    spec: AclFile, client_id: str, username: str | None, topic_filter: str, allowed: bool
) -> None:
    assert spec.check(client_id, username, topic_filter, S) is allowed


def test_deny_overrides_every_grant_including_patterns() -> None:
    acl = AclFile.loads(
        "pattern readwrite devices/%c/#\n"
        "pattern deny devices/%c/secret\n"
        "user alice\n"
        "topic readwrite #\n"
        "topic deny private/#\n"
    )
    assert acl.check("c1", "alice", "public/x", W)
    assert not acl.check("c1", "alice", "private/x", R)
    assert not acl.check("c1", "alice", "private/x", W)
    assert not acl.check("c1", "alice", "private/#", S)
    assert not acl.check("c1", "alice", "private/+/y", S)
    assert acl.check("c1", "alice", "devices/c1/x", R)
    assert not acl.check("c1", "alice", "devices/c1/secret", R)
    assert not acl.check("c1", "bob", "devices/c1/secret", W)
    # A deny that only overlaps a subscription is enforced per message, on READ.
    assert acl.check("c1", "alice", "#", S)
    assert acl.check("c1", "alice", "private", S) is False  # covered by private/#


UNSAFE = ["+", "#", "c1/x", "", "c\x00", "$SYS"]
NAMES = ["devices/a/x", "devices/c1/x/y", "$SYS/x", "c1/x/y", "a/x"]
FILTERS = ["devices/+/#", "devices/#", "devices/+", "#", "+/#", "$SYS/#", "c1/x/#"]


@pytest.mark.parametrize("client_id", UNSAFE)
def test_unsafe_client_ids_never_substitute(client_id: str) -> None:
    """CVE-2017-7650 and friends: a client named '#' must not own devices/#, one named 'c1/x'
    must not reach into client c1's tree, one named '$SYS' must not own $SYS/#.
    """
    acl = AclFile.loads("pattern readwrite devices/%c/#\npattern readwrite %c/#\n")
    assert acl.check("c1", None, "devices/c1/x/y", W)  # the rules do work for a plain id
    for name in NAMES:
        assert not acl.check(client_id, None, name, R), name
        assert not acl.check(client_id, None, name, W), name
    for topic_filter in FILTERS:
        assert not acl.check(client_id, None, topic_filter, S), topic_filter


@pytest.mark.parametrize("username", UNSAFE)
def test_unsafe_usernames_never_substitute(username: str) -> None:
    acl = AclFile.loads("pattern readwrite devices/%u/#\npattern readwrite %u/#\n")
    assert acl.check("c", "c1", "devices/c1/x/y", W)
    for name in NAMES:
        assert not acl.check("c", username, name, R), name
        assert not acl.check("c", username, name, W), name
    for topic_filter in FILTERS:
        assert not acl.check("c", username, topic_filter, S), topic_filter


def test_dollar_inside_a_topic_substitutes() -> None:
    acl = AclFile.loads("pattern read devices/%c/#\n")
    assert acl.check("$weird", None, "devices/$weird/x", R)


def test_dollar_topics_need_explicit_rules() -> None:
    acl = AclFile.loads("topic read #\ntopic read +/x\ntopic read $SYS/broker/#\n")
    assert not acl.check("c", None, "$SYS/x", R)
    assert not acl.check("c", None, "$SYS/#", S)
    assert not acl.check("c", None, "$other/x", R)
    assert acl.check("c", None, "$SYS/broker/uptime", R)
    assert acl.check("c", None, "$SYS/broker/+", S)
    assert acl.check("c", None, "any/x", R)


def test_empty_acl_denies_everything() -> None:
    acl = AclFile.loads("# nothing\n\n")
    for access in Access:
        assert not acl.check("c", None, "a", access)
        assert not acl.check("c", "alice", "a", access)
    assert acl.decide("c", None, "a", R) is None


def test_decide_tells_no_rule_from_denied(spec: AclFile) -> None:
    assert spec.decide("c1", "alice", "a/b", R) is True
    assert spec.decide("c1", "alice", "a/secret", R) is False
    assert spec.decide("c1", "alice", "nothing/here", R) is None


# -- parsing -----------------------------------------------------------------------------------


def test_syntax_blanks_tabs_default_access_and_spaces_in_topics() -> None:
    acl = AclFile.loads(
        "  # indented comment\r\n"
        "topic\tplain/x\r\n"
        "topic   read   with space/x  \n"
        "user   bob  \n"
        "\ttopic deny bob/x\n"
        "topic write bob/#\n"
    )
    assert acl.check("c", None, "plain/x", R)
    assert acl.check("c", None, "plain/x", W)  # no access keyword: readwrite
    assert acl.check("c", None, "with space/x", R)
    assert acl.check("c", "bob", "bob/y", W)
    assert not acl.check("c", "bob", "bob/x", W)


def test_load_from_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "acl"
    path.write_text("user alice\ntopic read a/#\nbogus line\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        AclFile.load(path)
    assert info.value.where == f"{path}:3"
    path.write_text("user alice\ntopic read a/#\n", encoding="utf-8")
    assert AclFile.load(path).check("c", "alice", "a/b", R)


BAD_LINES = [
    ("topic", "needs a topic"),
    ("topic   ", "needs a topic"),
    ("pattern", "needs a topic"),
    ("user", "needs a username"),
    ("topic foo bar", "access must be"),  # two words: the first must be an access type
    ("topic readonly a/b", "access must be"),
    ("topic read a/#/b", "invalid topic"),
    ("topic read a/b+", "invalid topic"),
    ("topic read a\x00b", "invalid topic"),
    ("pattern read dev-%c/x", "whole topic level"),
    ("pattern read a/%u%c", "whole topic level"),
    ("users alice", "unknown keyword"),
    ("Topic read a", "unknown keyword"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_malformed_lines(line: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        AclFile.loads(f"# ok\ntopic read ok\n{line}\n", source="x.acl")
    assert info.value.where == "x.acl:3"
    assert reason in info.value.reason


def test_non_utf8_is_config_error() -> None:
    with pytest.raises(ConfigError, match="UTF-8") as info:
        AclFile.loads(b"topic read a\ntopic read \xff\n")
    assert info.value.where == "<acl>:2"


def test_acl_module_is_pure() -> None:
    tree = ast.parse(Path(acl_mod.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"asyncio", "socket", "ssl", "selectors", "time", "logging"}


# -- filter_covered ----------------------------------------------------------------------------

COVERED = [
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/b", "a/+", False),
    ("a/b", "a/#", False),
    ("a/b", "a", False),
    ("a/b", "a/b/c", False),
    ("a/+", "a/b", True),
    ("a/+", "a/+", True),
    ("a/+", "a/#", False),
    ("a/+", "a", False),
    ("a/+", "a/", True),  # an empty level is a level
    ("a/+", "a/b/c", False),
    ("a/#", "a", True),
    ("a/#", "a/#", True),
    ("a/#", "a/+/c", True),
    ("a/#", "a/b/c/d", True),
    ("a/#", "b/#", False),
    ("a/#", "#", False),
    ("#", "#", True),
    ("#", "a/+/#", True),
    ("#", "$SYS/x", False),  # [MQTT-4.7.2-1]
    ("+/#", "$SYS/#", False),
    ("+/x", "+/x", True),
    ("+/x", "a/x", True),
    ("+/x", "#", False),
    ("$SYS/#", "$SYS/broker/+", True),
    ("+/+", "+/+/+", False),
    ("a/+/c", "a/+/c", True),
    ("a/+/c", "a/b/+", False),
]


@pytest.mark.parametrize(("acl_pattern", "sub_filter", "covered"), COVERED)
def test_filter_covered(acl_pattern: str, sub_filter: str, covered: bool) -> None:
    assert filter_covered(acl_pattern, sub_filter) is covered


# -- authorizer and chain ----------------------------------------------------------------------


async def test_acl_authorizer_verdicts(spec: AclFile) -> None:
    auth = AclAuthorizer(spec)
    assert await auth.authorize("c1", "alice", "a/b", R) is Verdict.ALLOW
    assert await auth.authorize("c1", "alice", "a/secret", R) is Verdict.DENY
    assert await auth.authorize("c1", "alice", "zzz", R) is Verdict.DEFER


class Fixed:
    def __init__(self, verdict: Verdict | Exception) -> None:
        self.verdict = verdict
        self.calls = 0

    async def authorize(
        self, client_id: str, username: str | None, topic: str, access: Access
    ) -> Verdict:
        self.calls += 1
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict


async def test_chain_authorization_order_and_defaults(spec: AclFile) -> None:
    assert await AuthChain([], [], allow_anonymous=False).authorize("c", None, "t", W) is (
        Verdict.ALLOW
    )  # no authorizer configured
    only_acl = AuthChain([], [AclAuthorizer(spec)], allow_anonymous=True)
    assert await only_acl.authorize("c1", "alice", "a/b", W) is Verdict.ALLOW
    assert await only_acl.authorize("c1", "alice", "zzz", W) is Verdict.DENY  # all deferred
    allow = Fixed(Verdict.ALLOW)
    chain = AuthChain([], [AclAuthorizer(spec), allow], allow_anonymous=False)
    assert await chain.authorize("c1", "alice", "zzz", W) is Verdict.ALLOW  # acl deferred
    assert await chain.authorize("c1", "alice", "a/secret", W) is Verdict.DENY  # acl denied
    assert allow.calls == 1
    deferring = AuthChain([], [Fixed(Verdict.DEFER)], allow_anonymous=True)
    assert await deferring.authorize("c", None, "t", R) is Verdict.DENY


async def test_chain_authorization_fails_closed_uncached(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Fixed(RuntimeError("boom"))
    chain = AuthChain([], [flaky, Fixed(Verdict.ALLOW)], allow_anonymous=True, cache_ttl=60)
    with caplog.at_level("ERROR", logger="wrenmq.broker.auth"):  # expected: the error is logged
        assert await chain.authorize("c", None, "t", R) is Verdict.DENY
        flaky.verdict = Verdict.ALLOW
        assert await chain.authorize("c", None, "t", R) is Verdict.ALLOW  # asked again
    assert chain.errors == 1
    assert flaky.calls == 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_chain_cache_ttl() -> None:
    clock = Clock()
    inner = Fixed(Verdict.ALLOW)
    chain = AuthChain([], [inner], allow_anonymous=False, cache_ttl=5, clock=clock)
    for _ in range(3):
        assert await chain.authorize("c", "u", "t", W) is Verdict.ALLOW
    assert inner.calls == 1
    # Every part of the key counts.
    await chain.authorize("c2", "u", "t", W)
    await chain.authorize("c", None, "t", W)
    await chain.authorize("c", "u", "t2", W)
    await chain.authorize("c", "u", "t", R)
    assert inner.calls == 5
    inner.verdict = Verdict.DENY
    clock.now += 4.9
    assert await chain.authorize("c", "u", "t", W) is Verdict.ALLOW
    clock.now += 0.2
    assert await chain.authorize("c", "u", "t", W) is Verdict.DENY
    assert inner.calls == 6
    inner.verdict = Verdict.ALLOW
    chain.clear_cache()
    assert await chain.authorize("c", "u", "t", W) is Verdict.ALLOW


async def test_chain_cache_is_bounded() -> None:
    inner = Fixed(Verdict.ALLOW)
    chain = AuthChain([], [inner], allow_anonymous=False, cache_ttl=60, cache_size=2, clock=Clock())
    for topic in ["a", "b", "c"]:
        await chain.authorize("c", None, topic, R)
    assert inner.calls == 3
    await chain.authorize("c", None, "c", R)
    await chain.authorize("c", None, "b", R)
    assert inner.calls == 3
    await chain.authorize("c", None, "a", R)  # the oldest went first
    assert inner.calls == 4


async def test_no_cache_by_default() -> None:
    inner = Fixed(Verdict.ALLOW)
    chain = AuthChain([], [inner], allow_anonymous=False)
    await chain.authorize("c", None, "t", R)
    await chain.authorize("c", None, "t", R)
    assert inner.calls == 2


@pytest.mark.parametrize("kwargs", [{"cache_ttl": -1}, {"cache_size": 0}])
def test_chain_rejects_bad_cache_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AuthChain([], [], allow_anonymous=False, **kwargs)  # type: ignore[arg-type]
