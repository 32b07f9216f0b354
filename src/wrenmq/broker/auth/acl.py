"""Mosquitto ACL files (``acl_file``): parse them and decide who may use which topic.

Syntax, one statement a line (blanks around tokens trimmed; ``#`` starts a comment line)::

    topic [read|write|readwrite|deny] <topic>     # access defaults to readwrite
    user <username>                               # following topic lines are this user's
    pattern [read|write|readwrite|deny] <topic>   # every client; %c / %u substituted

Semantics, as in Mosquitto 2:

* ``topic`` lines before the first ``user`` line apply to anonymous clients (no username) only;
  ``topic`` lines after ``user <name>`` apply to the clients that authenticated as ``name``; a
  client whose username has no section gets only the ``pattern`` lines. Sections of the same user
  add up.
* ``pattern`` lines apply to every client wherever they appear. ``%c`` stands for the client id,
  ``%u`` for the username.
* ``deny`` wins: every deny rule that applies is looked at before any grant.
* Deny by default: when no rule grants an access, it is refused.

Where we differ from Mosquitto 2.0.11, on purpose:

* ``%c`` / ``%u`` must be a whole topic level (what the Mosquitto manual says; 2.0.11 also
  replaces them inside a level). ``pattern read dev-%c/x`` is a :class:`~wrenmq.errors.ConfigError`
  rather than a rule that silently means something else.
* A client id or username substitutes only if it is non-empty and contains no ``+``, ``#``, ``/``
  or U+0000, and, for a first level, does not start with ``$``. Otherwise a client named ``#``
  would turn ``devices/%c/#`` into ``devices/#`` (CVE-2017-7650), one named ``a/b`` would reach
  into client ``a``'s tree and one named ``$SYS`` would turn ``%c/#`` into ``$SYS/#``. Such a
  client simply gets nothing from the patterns.
* SUBSCRIBE is checked (Mosquitto 2.0.11 grants every subscription and filters on delivery): a
  filter is allowed when a read rule *covers* it, i.e. every topic the filter can match is matched
  by the rule (:func:`filter_covered`), and refused when a deny rule covers it. A deny rule that
  only overlaps the filter (``deny a/secret`` under a subscription to ``a/#``) does not refuse the
  subscription; it is enforced per message by the READ check the router makes on delivery.
* A malformed line is a :class:`~wrenmq.errors.ConfigError` with ``file:line``.

Pure module: stdlib and ``wrenmq.codec.topics`` / ``wrenmq.errors`` only; no asyncio, no clock.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable

from wrenmq.codec.topics import parse_shared, topic_matches, validate_topic_filter
from wrenmq.errors import ConfigError, RemoteProtocolError

__all__ = ["Access", "AclFile", "filter_covered"]

_SEP = "/"
_SINGLE = "+"
_MULTI = "#"
_CLIENT_ID = "%c"
_USERNAME = "%u"
_UNSAFE = frozenset("+#/\x00")
_BLANKS = " \t"


class Access(enum.Enum):
    """What a client wants to do with a topic."""

    READ = "read"  # receive a message published to a topic name (checked per delivery)
    WRITE = "write"  # publish to a topic name
    SUBSCRIBE = "subscribe"  # subscribe with a topic filter (checked against read rules)


# Access keyword -> (grants read, grants write); deny is neither.
_KINDS: dict[str, tuple[bool, bool]] = {
    "read": (True, False),
    "write": (False, True),
    "readwrite": (True, True),
    "deny": (False, False),
}


def filter_covered(acl_pattern: str, sub_filter: str) -> bool:
    """Tell whether an ACL topic pattern covers a subscription filter.

    Covered means every topic name ``sub_filter`` matches is also matched by ``acl_pattern``, so
    granting the subscription grants nothing the rule does not. Wildcards in the filter are
    matched only by wildcards in the pattern: ``+`` covers ``+`` or any one level, ``#`` covers
    whatever follows; a literal level never covers a wildcard. A pattern whose first level is a
    wildcard does not cover a filter whose first level starts with ``$`` [MQTT-4.7.2-1].

    Examples: ``a/+`` covers ``a/b`` and ``a/+`` but not ``a/#``; ``a/#`` covers ``a``, ``a/+/c``
    and ``a/#``; ``a/b`` does not cover ``a/+``.

    Args:
        acl_pattern: A valid topic filter (from the ACL file, substitutions done).
        sub_filter: A valid, non-shared topic filter.

    Returns:
        True when the pattern covers the filter.
    """
    acl_levels = acl_pattern.split(_SEP)
    sub_levels = sub_filter.split(_SEP)
    if acl_levels[0] in (_SINGLE, _MULTI) and sub_levels[0].startswith("$"):
        return False
    for i, rule in enumerate(acl_levels):
        if rule == _MULTI:
            return True  # also covers the parent level: "a/#" matches "a"
        if i >= len(sub_levels):
            return False
        level = sub_levels[i]
        if level == _MULTI:
            return False  # the filter goes deeper or shallower than this pattern can
        if rule != _SINGLE and rule != level:
            return False  # a literal covers only the same literal, never "+"
    return len(sub_levels) == len(acl_levels)


class _Rule:
    """One ``topic`` or ``pattern`` line; ``subst`` lists (level index, "%c" | "%u")."""

    __slots__ = ("levels", "subst", "topic")

    def __init__(self, topic: str, *, pattern: bool) -> None:
        self.topic = topic
        self.levels = topic.split(_SEP)
        self.subst: tuple[tuple[int, str], ...] = ()
        if pattern:
            self.subst = tuple(
                (i, level)
                for i, level in enumerate(self.levels)
                if level in (_CLIENT_ID, _USERNAME)
            )

    def resolve(self, client_id: str, username: str | None) -> str | None:
        """The topic with substitutions done; None when a value may not be substituted."""
        if not self.subst:
            return self.topic
        levels = list(self.levels)
        for i, marker in self.subst:
            value = client_id if marker == _CLIENT_ID else username
            if not value or not _UNSAFE.isdisjoint(value) or (i == 0 and value.startswith("$")):
                return None
            levels[i] = value
        return _SEP.join(levels)


class _Rules:
    """The rules of one client class, split by what they decide."""

    __slots__ = ("deny", "read", "write")

    def __init__(self) -> None:
        self.deny: list[_Rule] = []
        self.read: list[_Rule] = []
        self.write: list[_Rule] = []

    def add(self, rule: _Rule, kind: str) -> None:
        read, write = _KINDS[kind]
        if read:
            self.read.append(rule)
        if write:
            self.write.append(rule)
        if not (read or write):
            self.deny.append(rule)


_NO_RULES = _Rules()


class AclFile:
    """The rules of one Mosquitto ACL file; :meth:`check` is the broker's synchronous hot path."""

    def __init__(self) -> None:
        """An ACL with no rules: it refuses everything."""
        self._anonymous = _Rules()
        self._users: dict[str, _Rules] = {}
        self._patterns = _Rules()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AclFile:
        """Read an ACL file.

        Raises:
            ConfigError: A line is malformed; ``where`` is ``"<path>:<line number>"``.
            OSError: The file cannot be read.
        """
        with open(path, "rb") as f:
            data = f.read()
        return cls.loads(data, source=os.fspath(path))

    @classmethod
    def loads(cls, text: str | bytes, *, source: str = "<acl>") -> AclFile:
        """Parse ACL file contents; ``source`` names them in errors (``source:line``).

        Raises:
            ConfigError: A line is malformed.
        """
        acl = cls()
        raw = text if isinstance(text, bytes) else text.encode("utf-8")
        section = acl._anonymous
        for lineno, raw_line in enumerate(raw.split(b"\n"), start=1):
            where = f"{source}:{lineno}"
            try:
                line = raw_line.decode("utf-8").strip(_BLANKS + "\r")
            except UnicodeDecodeError:
                raise ConfigError(where, "not valid UTF-8") from None
            if not line or line.startswith("#"):
                continue
            keyword, rest = _split_word(line)
            if keyword == "user":
                if not rest:
                    raise ConfigError(where, "'user' needs a username")
                section = acl._users.setdefault(rest, _Rules())
            elif keyword in ("topic", "pattern"):
                kind, topic = _parse_rule(rest, keyword, where)
                pattern = keyword == "pattern"
                (acl._patterns if pattern else section).add(_Rule(topic, pattern=pattern), kind)
            else:
                raise ConfigError(
                    where, f"unknown keyword {keyword[:32]!r} (expected topic, pattern or user)"
                )
        return acl

    def check(self, client_id: str, username: str | None, topic: str, access: Access) -> bool:
        """Tell whether a client may read, write or subscribe: the broker's hot path.

        Args:
            client_id: The client identifier (substituted for ``%c``).
            username: The authenticated username, None for an anonymous client.
            topic: A topic name for READ and WRITE, a topic filter (``$share/...`` allowed) for
                SUBSCRIBE. Assumed valid; an invalid shared filter is refused.
            access: What the client wants to do.

        Returns:
            True when a rule grants the access and no deny rule applies.
        """
        return self.decide(client_id, username, topic, access) is True

    def decide(
        self, client_id: str, username: str | None, topic: str, access: Access
    ) -> bool | None:
        """Like :meth:`check`, but tell "no rule applies" (None) from "denied" (False).

        A chain of authorizers uses this to let a later one decide what the file says nothing
        about; :meth:`check` treats None as a refusal.
        """
        matches: Callable[[str, str], bool]
        if access is Access.SUBSCRIBE:
            try:
                shared = parse_shared(topic)
            except RemoteProtocolError:
                return False
            if shared is not None:
                # Access is about the topics, whichever group receives them.
                topic = shared.topic_filter
            matches = filter_covered
        else:
            matches = topic_matches
        own = self._anonymous if username is None else self._users.get(username, _NO_RULES)
        patterns = self._patterns
        for rules in (own.deny, patterns.deny):
            for rule in rules:
                resolved = rule.resolve(client_id, username)
                if resolved is not None and matches(resolved, topic):
                    return False
        if access is Access.WRITE:
            grants = (own.write, patterns.write)
        else:
            grants = (own.read, patterns.read)
        for rules in grants:
            for rule in rules:
                resolved = rule.resolve(client_id, username)
                if resolved is not None and matches(resolved, topic):
                    return True
        return None


def _parse_rule(rest: str, keyword: str, where: str) -> tuple[str, str]:
    """``[access] <topic>`` -> (access kind, topic), checked."""
    if not rest:
        raise ConfigError(where, f"'{keyword}' needs a topic")
    kind, topic = _split_word(rest)
    if not topic:
        kind, topic = "readwrite", kind
    elif kind not in _KINDS:
        # Like Mosquitto: two words means "<access> <topic>"; a topic with a blank needs one.
        raise ConfigError(
            where, f"access must be read, write, readwrite or deny, not {kind[:32]!r}"
        )
    try:
        validate_topic_filter(topic)
    except RemoteProtocolError as exc:
        raise ConfigError(where, f"invalid topic: {exc.message}") from None
    if keyword == "pattern":
        for level in topic.split(_SEP):
            if level not in (_CLIENT_ID, _USERNAME) and (_CLIENT_ID in level or _USERNAME in level):
                raise ConfigError(
                    where, f"%c and %u must be a whole topic level, not part of {level[:32]!r}"
                )
    return kind, topic


def _split_word(text: str) -> tuple[str, str]:
    """``"word  rest of line"`` -> ``("word", "rest of line")``; blanks are spaces and tabs."""
    for i, ch in enumerate(text):
        if ch in _BLANKS:
            return text[:i], text[i:].strip(_BLANKS)
    return text, ""
