"""Pluggable authentication and authorization: the Protocols, the file-backed implementations and
the chain the broker asks.

An :class:`Authenticator` decides whether a CONNECT may proceed, an :class:`Authorizer` whether a
client may read, write or subscribe to a topic. Each answers ``Verdict.ALLOW``, ``Verdict.DENY``
or ``Verdict.DEFER`` (no opinion); :class:`AuthChain` asks them in order, the first ALLOW or DENY
wins, and settles what everyone deferred:

* authentication: with no authenticator configured, ALLOW if ``allow_anonymous`` else DENY (like
  Mosquitto without a ``password_file``, a username is then not checked); otherwise ALLOW only an
  anonymous client (no username) when ``allow_anonymous``, DENY the rest;
* authorization: ALLOW when no authorizer is configured, DENY otherwise (deny by default).

An implementation that raises is logged, counted in :attr:`AuthChain.errors` and taken as DENY:
failing closed. The chain may cache authorization verdicts for ``cache_ttl`` seconds (bounded by
``cache_size`` entries, oldest dropped first); call :meth:`AuthChain.clear_cache` after changing
the rules. Authentication is never cached, so no password is kept.

The broker's publish/deliver hot path may skip all of this and call the synchronous
:meth:`~wrenmq.broker.auth.acl.AclFile.check` when the ACL file is the only authorizer.

:func:`load_plugin` loads what ``auth_plugins = ["module:name"]`` names.

Imports: stdlib, ``wrenmq.errors``, ``wrenmq.broker.hooks`` (``Verdict``) and the sibling ``acl``
/ ``passwd``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from wrenmq.broker.auth.acl import Access, AclFile
from wrenmq.broker.auth.passwd import PasswordFile
from wrenmq.broker.hooks import Verdict
from wrenmq.errors import ConfigError

__all__ = [
    "AclAuthorizer",
    "AuthChain",
    "Authenticator",
    "Authorizer",
    "PasswordFileAuthenticator",
    "load_plugin",
]

log = logging.getLogger("wrenmq.broker.auth")

# Above this many PBKDF2 iterations (about 1 ms of CPU) a verification runs in a worker thread
# (hashlib releases the GIL) instead of stalling the event loop; the default 101 stays inline.
_INLINE_ITERATIONS = 1_000

_CacheKey = tuple[str, str | None, str, Access]


class Authenticator(Protocol):
    """Decides whether a connecting client is who it says it is."""

    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: str
    ) -> Verdict:
        """Judge one CONNECT.

        Args:
            client_id: The client identifier (assigned by the broker if the client sent none).
            username: The CONNECT username, None if absent.
            password: The CONNECT password, None if absent. Never log or keep it.
            peer: The remote address, ``"host:port"``.

        Returns:
            ALLOW, DENY, or DEFER to let the next authenticator decide.
        """
        ...


class Authorizer(Protocol):
    """Decides whether a client may use a topic."""

    async def authorize(
        self, client_id: str, username: str | None, topic: str, access: Access
    ) -> Verdict:
        """Judge one access.

        Args:
            client_id: The client identifier.
            username: The authenticated username, None for an anonymous client.
            topic: A topic name (READ, WRITE) or topic filter (SUBSCRIBE).
            access: What the client wants to do.

        Returns:
            ALLOW, DENY, or DEFER to let the next authorizer decide.
        """
        ...


class PasswordFileAuthenticator:
    """Checks usernames and passwords against a Mosquitto password file.

    No username: DEFER (anonymous; the chain's ``allow_anonymous`` decides). A username the file
    does not know: DEFER, so a later authenticator may know it. A known user with the right
    password: ALLOW; with a wrong, missing or empty password: DENY (Mosquitto 2 refuses an empty
    password too, even when the file holds the hash of one).
    """

    def __init__(self, passwords: PasswordFile) -> None:
        self._passwords = passwords
        self._offload = passwords.max_iterations > _INLINE_ITERATIONS

    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: str
    ) -> Verdict:
        """See :meth:`Authenticator.authenticate`."""
        if username is None:
            return Verdict.DEFER
        passwords = self._passwords
        # Verify even for an unknown user: both paths cost the same, hiding who exists.
        if self._offload:
            ok = await asyncio.to_thread(passwords.verify, username, password or b"")
        else:
            ok = passwords.verify(username, password or b"")
        if username not in passwords:
            return Verdict.DEFER
        return Verdict.ALLOW if ok and password else Verdict.DENY


class AclAuthorizer:
    """Applies a Mosquitto ACL file: ALLOW what it grants, DENY what a deny rule covers, DEFER
    what it says nothing about (which the chain denies unless a later authorizer allows it).
    """

    def __init__(self, acl: AclFile) -> None:
        self._acl = acl

    async def authorize(
        self, client_id: str, username: str | None, topic: str, access: Access
    ) -> Verdict:
        """See :meth:`Authorizer.authorize`."""
        decision = self._acl.decide(client_id, username, topic, access)
        if decision is None:
            return Verdict.DEFER
        return Verdict.ALLOW if decision else Verdict.DENY


class AuthChain:
    """Runs authenticators and authorizers in order; itself an Authenticator and an Authorizer.

    Attributes:
        errors: How many times an authenticator or authorizer raised (each counted as DENY).
    """

    def __init__(
        self,
        authenticators: Sequence[Authenticator],
        authorizers: Sequence[Authorizer],
        *,
        allow_anonymous: bool,
        cache_ttl: float = 0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build the chain.

        Args:
            authenticators: Asked in order at CONNECT.
            authorizers: Asked in order for every access not in the cache.
            allow_anonymous: Whether a client without a username may connect when every
                authenticator defers.
            cache_ttl: Seconds an authorization verdict is reused; 0 disables the cache.
            cache_size: At most this many cached verdicts; the oldest go first.
            clock: Monotonic seconds, for the cache; injectable for tests.
        """
        if cache_ttl < 0 or cache_size < 1:
            raise ValueError("cache_ttl must be >= 0 and cache_size >= 1")
        self._authenticators = tuple(authenticators)
        self._authorizers = tuple(authorizers)
        self._allow_anonymous = allow_anonymous
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._clock = clock
        self._cache: dict[_CacheKey, tuple[float, Verdict]] = {}
        self.errors = 0

    async def authenticate(
        self,
        client_id: str,
        username: str | None,
        password: bytes | None,
        peer: str,
        *,
        allow_anonymous: bool | None = None,
    ) -> Verdict:
        """Judge a CONNECT; returns ALLOW or DENY, never DEFER.

        ``allow_anonymous`` overrides the chain's for this call (a listener's own setting).
        """
        if allow_anonymous is None:
            allow_anonymous = self._allow_anonymous
        if not self._authenticators:
            return Verdict.ALLOW if allow_anonymous else Verdict.DENY
        for authenticator in self._authenticators:
            try:
                verdict = await authenticator.authenticate(client_id, username, password, peer)
            except Exception:
                self.errors += 1
                log.exception("authenticator %r failed; denying %r", authenticator, client_id)
                return Verdict.DENY
            if verdict is not Verdict.DEFER:
                return self._settled(verdict, authenticator)
        if allow_anonymous and username is None:
            return Verdict.ALLOW
        return Verdict.DENY

    @property
    def authorizes(self) -> bool:
        """Whether any authorizer is configured."""
        return bool(self._authorizers)

    def cached(
        self, client_id: str, username: str | None, topic: str, access: Access
    ) -> Verdict | None:
        """The cached verdict for this access, None when there is none (or it expired)."""
        if not self._cache_ttl:
            return None
        key = (client_id, username, topic, access)
        hit = self._cache.get(key)
        if hit is None:
            return None
        if hit[0] > self._clock():
            return hit[1]
        del self._cache[key]
        return None

    async def authorize(
        self, client_id: str, username: str | None, topic: str, access: Access
    ) -> Verdict:
        """Judge an access; returns ALLOW or DENY, never DEFER."""
        if not self._authorizers:
            return Verdict.ALLOW
        key = (client_id, username, topic, access)
        if self._cache_ttl:
            hit = self._cache.get(key)
            if hit is not None:
                if hit[0] > self._clock():
                    return hit[1]
                del self._cache[key]
        verdict = Verdict.DENY
        for authorizer in self._authorizers:
            try:
                decided = await authorizer.authorize(client_id, username, topic, access)
            except Exception:
                self.errors += 1
                log.exception("authorizer %r failed; denying %r", authorizer, client_id)
                return Verdict.DENY  # not cached: the next attempt asks again
            if decided is not Verdict.DEFER:
                verdict = self._settled(decided, authorizer)
                break
        if self._cache_ttl:
            cache = self._cache
            if len(cache) >= self._cache_size:
                # Every entry lives cache_ttl, so the first inserted expires first.
                del cache[next(iter(cache))]
            cache[key] = (self._clock() + self._cache_ttl, verdict)
        return verdict

    def _settled(self, verdict: object, source: object) -> Verdict:
        """ALLOW or DENY as answered; anything else is a broken plugin, counted and denied."""
        if verdict is Verdict.ALLOW or verdict is Verdict.DENY:
            return verdict
        self.errors += 1
        log.error("%r returned %r instead of a Verdict; denying", source, verdict)
        return Verdict.DENY

    def clear_cache(self) -> None:
        """Forget every cached authorization verdict (after the rules changed)."""
        self._cache.clear()


def load_plugin(spec: str) -> Any:
    """The object an ``auth_plugins`` entry ``"module:name"`` names; a class or function there
    is called with no arguments to make it.

    Raises:
        ConfigError: the module cannot be imported, has no such name, making the object failed,
            or it has none of ``authenticate``, ``authorize`` and ``auth_methods``.
    """
    module_name, _, name = spec.partition(":")
    where = f"auth_plugins {spec!r}"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own code failing
        raise ConfigError(where, f"cannot import {module_name!r}: {exc!r}") from None
    try:
        target = getattr(module, name)
    except AttributeError:
        raise ConfigError(where, f"module {module_name!r} has no {name!r}") from None
    plugin = target
    if callable(target) and not _is_plugin(target):
        try:
            plugin = target()
        except Exception as exc:
            raise ConfigError(where, f"{name}() failed: {exc!r}") from None
    if not (_is_plugin(plugin) or getattr(plugin, "auth_methods", None)):
        raise ConfigError(
            where, "expected an object with authenticate(), authorize() or auth_methods"
        )
    return plugin


def _is_plugin(obj: object) -> bool:
    return not isinstance(obj, type) and (hasattr(obj, "authenticate") or hasattr(obj, "authorize"))
