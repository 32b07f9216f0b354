"""Typed broker configuration: frozen dataclasses, a TOML loader and one table-driven validator.

Role: turn a ``wrenmq.toml`` file (:func:`load_toml`), a plain mapping
(:meth:`BrokerConfig.from_mapping`) or keyword arguments (:meth:`BrokerConfig.from_kwargs`) into an
immutable, validated :class:`BrokerConfig`. Reading the file is kept apart from validating the
mapping, so every path runs the same checks. Every problem is a :class:`~wrenmq.errors.ConfigError`
whose ``where`` is ``"SOURCE:key"``, e.g. ``"wrenmq.toml:listener[1].port"`` (listener indexes
count from 0, like the TOML array) or ``"keyword:max_keepalive"``.

Keys use mosquitto.conf's option names and equal the field names, except that ``[[listener]]``
tables fill ``listeners``. Each field carries its check in its ``metadata``, so the keys cannot
drift from the dataclass. The constructors do not validate (they serve defaults and tests).

Imports: the standard library and :mod:`wrenmq.errors` only.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import reprlib
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar, get_args

from wrenmq.errors import ConfigError

__all__ = ["BrokerConfig", "ListenerConfig", "ListenerProtocol", "LogLevel", "load_toml"]

ListenerProtocol = Literal["mqtt", "mqtt+tls", "ws", "wss"]
LogLevel = Literal["debug", "info", "warning", "error"]
Durability = Literal["ack", "periodic", "none"]
TLSVersionName = Literal["tlsv1.2", "tlsv1.3"]
RateLimitAction = Literal["throttle", "disconnect"]

# MQTT 5 section 2.1.4: the Remaining Length is at most 268,435,455; a whole packet adds one byte of
# fixed header and four bytes of Remaining Length.
_MAX_REMAINING_LENGTH = 268_435_455
_MAX_PACKET_SIZE = _MAX_REMAINING_LENGTH + 5
_TLS_PROTOCOLS = frozenset({"mqtt+tls", "wss"})

# ---------------------------------------------------------------------------------------------
# Checks: each takes the raw value and its `where`, and returns the value to store or raises.

_Check = Callable[[object, str], Any]
_T = TypeVar("_T")
_KINDS = {bool: "boolean", int: "integer", float: "float", str: "string", dict: "table"}
_DURATION = re.compile(r"([0-9]+)([hdwmy])")
_UNIT_SECONDS = {"h": 3600, "d": 86_400, "w": 7 * 86_400, "m": 30 * 86_400, "y": 365 * 86_400}


def _describe(value: object) -> str:
    kind = _KINDS.get(type(value), "array" if isinstance(value, list | tuple) else None)
    return f"{kind or type(value).__name__} {reprlib.repr(value)}"


def _integer(low: int, high: int | None = None) -> _Check:
    def check(value: object, where: str) -> int:
        # bool is an int subclass in Python, but `true` where a number belongs is a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, f"expected an integer, got {_describe(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(where, f"must be {bounds}, got {value}")
        return value

    return check


def _seconds(*, positive: bool) -> _Check:
    def check(value: object, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(where, f"expected a number of seconds, got {_describe(value)}")
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            bound = "greater than 0" if positive else "0 or more"
            raise ConfigError(where, f"must be a finite number {bound}, got {value}")
        return float(value)

    return check


def _rate(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(where, f"expected a number per second, got {_describe(value)}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(where, f"must be a finite number 0 (unlimited) or more, got {value}")
    return float(value)


def _boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(where, f"expected true or false, got {_describe(value)}")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(where, f"expected a string, got {_describe(value)}")
    if not value:
        raise ConfigError(where, "must not be empty")
    return value


def _choice(*options: str) -> _Check:
    def check(value: object, where: str) -> str:
        text = _text(value, where)
        if text not in options:
            raise ConfigError(where, f"must be one of {list(options)}, got {text!r}")
        return text

    return check


def _optional(check: _Check) -> _Check:
    # TOML has no null: None only arrives from keyword arguments and replace().
    return lambda value, where: None if value is None else check(value, where)


def _plugins(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(
            where, f"expected an array of 'module:name' strings, got {_describe(value)}"
        )
    specs = []
    for i, item in enumerate(value):
        text = _text(item, f"{where}[{i}]")
        module, sep, name = text.partition(":")
        if not (sep and module and name):
            raise ConfigError(f"{where}[{i}]", f"expected 'module:name', got {text!r}")
        specs.append(text)
    return tuple(specs)


def _connection_limit(value: object, where: str) -> int:
    limit: int = _integer(-1)(value, where)
    if limit == 0:
        # 0 means "unlimited" for most limits here; silently refusing every client would be a trap.
        raise ConfigError(where, "must be -1 (unlimited) or at least 1, got 0")
    return limit


def _duration(value: object, where: str) -> int:
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            like = "like '2h', '14d', '1w', '3m' (30-day months) or '1y'"
            raise ConfigError(where, f"expected seconds or a duration {like}, got {value!r}")
        value = int(match[1]) * _UNIT_SECONDS[match[2]]
    return int(_integer(1)(value, where))


def _field(default: _T, check: _Check) -> _T:
    # The check rides in the field's metadata, so the key table cannot drift from the dataclass.
    value: _T = field(default=default, metadata={"check": check})
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerConfig:
    """One network endpoint the broker accepts connections on (a ``[[listener]]`` table).

    Attributes:
        port: TCP port, 0..65535; 0 asks the OS for an ephemeral port. Required in a table.
        bind_address: Address or host name to bind; default ``"0.0.0.0"`` (all IPv4 interfaces).
        protocol: ``"mqtt"`` (default), ``"mqtt+tls"``, ``"ws"`` (WebSocket) or ``"wss"``.
        certfile: PEM certificate chain; required by ``mqtt+tls`` and ``wss``. Default None.
        keyfile: PEM private key; required by ``mqtt+tls`` and ``wss``. Default None.
        cafile: PEM CA bundle that client certificates are checked against. Default None.
        require_certificate: Demand a valid client certificate (needs ``cafile``). Default False.
        ws_path: HTTP path of the WebSocket endpoint (``ws``, ``wss``). Default ``"/mqtt"``.
        allow_anonymous: This listener's ``allow_anonymous``; default None inherits the broker's.
        max_connections: This listener's client limit (-1 unlimited); None inherits the broker's.
        ciphers: OpenSSL cipher list for TLS 1.2 (TLS listeners); default None (OpenSSL's).
        tls_version: Lowest TLS version accepted, ``"tlsv1.2"`` (default) or ``"tlsv1.3"``.
        use_identity_as_username: The client certificate's subject CN is the user name and no
            password is checked, as in mosquitto (needs ``require_certificate``). Default False.
        proxy_protocol: Connections start with a PROXY protocol v1/v2 header whose source address
            is the client's, as behind HAProxy or an AWS NLB (``mqtt``, ``mqtt+tls`` -- the header
            precedes the TLS handshake -- and ``ws``; not ``wss``). Default False.
    """

    port: int = field(metadata={"check": _integer(0, 65535)})
    bind_address: str = _field("0.0.0.0", _text)
    protocol: ListenerProtocol = field(
        default="mqtt", metadata={"check": _choice(*get_args(ListenerProtocol))}
    )
    certfile: str | None = _field(None, _optional(_text))
    keyfile: str | None = _field(None, _optional(_text))
    cafile: str | None = _field(None, _optional(_text))
    require_certificate: bool = _field(False, _boolean)
    ws_path: str = _field("/mqtt", _text)
    allow_anonymous: bool | None = _field(None, _optional(_boolean))
    max_connections: int | None = _field(None, _optional(_connection_limit))
    ciphers: str | None = _field(None, _optional(_text))
    tls_version: TLSVersionName = field(
        default="tlsv1.2", metadata={"check": _choice(*get_args(TLSVersionName))}
    )
    use_identity_as_username: bool = _field(False, _boolean)
    proxy_protocol: bool = _field(False, _boolean)


# Mosquitto 2 "local only mode": with no listener configured, serve the loopback interface only.
_DEFAULT_LISTENER = ListenerConfig(port=1883, bind_address="127.0.0.1")


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """Everything the broker can be configured with; immutable once built.

    Attributes:
        listeners: From ``[[listener]]`` tables; default one ``mqtt`` listener on 127.0.0.1:1883.
            Top-level ``port`` and ``bind_address`` change that default listener instead.
        allow_anonymous: Accept clients that send no username. Default True.
        password_file: File that usernames and passwords are checked against; default None.
        acl_file: Access control list file; default None (every client may use every topic).
        auth_plugins: ``"module:name"`` of objects (or of callables returning them, called with
            no arguments) that are Authenticators (``authenticate``), Authorizers
            (``authorize``) and/or carry ``auth_methods`` (MQTT 5 enhanced authentication);
            asked after the password and ACL files. Default none.
        auth_cache_ttl: Seconds a pluggable authorizer's verdict is reused; default 0 (asked
            every time).
        auth_timeout: Seconds a pluggable authenticator or authorizer may take before the
            attempt is denied; > 0, default 10.0.
        max_keepalive: Largest keep alive a client may use, in seconds (MQTT 5 clients asking
            for more are sent it as Server Keep Alive); 0..65535, default 65535.
        connect_timeout: Seconds a new connection has to send CONNECT; > 0, default 10.0.
        max_inflight_messages: QoS 1/2 messages in flight per client; 1..65535, default 20.
        max_queued_messages: Messages queued per client beyond those in flight; >= 1, default 1000.
        max_queued_bytes: Payload bytes queued per client; default 0 (no byte limit).
        queue_qos0_messages: Queue QoS 0 messages for offline persistent sessions; default False.
        message_size_limit: Largest PUBLISH payload, bytes (<= 268435455); default 0 (no limit).
        max_packet_size: Largest packet accepted, bytes; 32..268435460 (MQTT maximum, default).
        max_connections: Clients connected at once; default -1 (unlimited); 0 is refused.
        max_connections_per_ip: Sockets one source address may hold open (checked on accept,
            before CONNECT); default 0 (unlimited).
        connection_rate_per_ip: New connections a second one source address may open, with a
            burst of ``max(1, rate)``; faster ones are closed on accept. Default 0 (unlimited).
        message_rate_limit: PUBLISH packets a second one client may send (burst one second's
            worth); default 0 (unlimited).
        byte_rate_limit: Bytes a second one client may send (burst one second's worth);
            default 0 (unlimited).
        rate_limit_action: Over ``message_rate_limit`` or ``byte_rate_limit``: ``"throttle"``
            (default) stops reading from the client until its rate allows more;
            ``"disconnect"`` closes it (MQTT 5: DISCONNECT 0x96 Message rate too high, or 0x97
            Quota exceeded for bytes).
        max_topic_alias: Topic Alias Maximum offered to MQTT 5 clients; 0..65535, default 10.
        max_subscriptions_per_client: Subscriptions one client may hold; default 0 (unlimited).
        max_topic_levels: Levels allowed in a topic name or filter; default 0 (unlimited).
        retain_available: Whether retained messages are supported; default True.
        retained_messages_max_count: Retained messages stored; default 0 (unlimited).
        retained_message_max_size: Largest retained payload in bytes; default 0 (unlimited).
        max_qos: Highest QoS the broker grants, 0..2; default 2.
        wildcard_subscription_available: Allow ``+`` and ``#`` in topic filters; default True.
        shared_subscription_available: Allow ``$share/`` subscriptions; default True.
        subscription_identifier_available: Support MQTT 5 Subscription Identifiers; default True.
        session_expiry_max: Cap on Session Expiry Interval, seconds; default 0xFFFFFFFF (none).
        persistent_client_expiration: Seconds an absent persistent client's session is kept;
            None (default) = forever; also durations "2h", "14d", "1w", "3m" (30 d), "1y" (365 d).
        sys_interval: Seconds between ``$SYS`` topic updates; default 10.0, 0 disables them.
        persistence: Save sessions and retained messages across restarts; default False.
        persistence_location: Directory for the persistence data; default ``"./data"``.
        durability: With persistence: ``"ack"`` (default) acknowledges a QoS >= 1 PUBLISH only
            once it is committed (or already acknowledged) for every persistent subscriber (group
            commit, one fsync per batch); ``"periodic"`` commits every ``flush_interval_ms`` (may
            lose that much); ``"none"`` commits lazily.
        flush_interval_ms: Commit period of ``"periodic"`` durability; 1..60000, default 50.
        log_level: ``"debug"``, ``"info"`` (default), ``"warning"`` or ``"error"``.
        use_uvloop: Run on uvloop where it is installed; default True.
    """

    listeners: tuple[ListenerConfig, ...] = (_DEFAULT_LISTENER,)
    allow_anonymous: bool = _field(True, _boolean)
    password_file: str | None = _field(None, _optional(_text))
    acl_file: str | None = _field(None, _optional(_text))
    auth_plugins: tuple[str, ...] = _field((), _plugins)
    auth_cache_ttl: float = _field(0.0, _seconds(positive=False))
    auth_timeout: float = _field(10.0, _seconds(positive=True))
    max_keepalive: int = _field(65535, _integer(0, 65535))
    connect_timeout: float = _field(10.0, _seconds(positive=True))
    max_inflight_messages: int = _field(20, _integer(1, 65535))
    max_queued_messages: int = _field(1000, _integer(1))
    max_queued_bytes: int = _field(0, _integer(0))
    queue_qos0_messages: bool = _field(False, _boolean)
    message_size_limit: int = _field(0, _integer(0, _MAX_REMAINING_LENGTH))
    max_packet_size: int = _field(_MAX_PACKET_SIZE, _integer(32, _MAX_PACKET_SIZE))
    max_connections: int = _field(-1, _connection_limit)
    max_connections_per_ip: int = _field(0, _integer(0))
    connection_rate_per_ip: float = _field(0.0, _rate)
    message_rate_limit: float = _field(0.0, _rate)
    byte_rate_limit: int = _field(0, _integer(0))
    rate_limit_action: RateLimitAction = field(
        default="throttle", metadata={"check": _choice(*get_args(RateLimitAction))}
    )
    max_topic_alias: int = _field(10, _integer(0, 65535))
    max_subscriptions_per_client: int = _field(0, _integer(0))
    max_topic_levels: int = _field(0, _integer(0))
    retain_available: bool = _field(True, _boolean)
    retained_messages_max_count: int = _field(0, _integer(0))
    retained_message_max_size: int = _field(0, _integer(0))
    max_qos: int = _field(2, _integer(0, 2))
    wildcard_subscription_available: bool = _field(True, _boolean)
    shared_subscription_available: bool = _field(True, _boolean)
    subscription_identifier_available: bool = _field(True, _boolean)
    session_expiry_max: int = _field(0xFFFF_FFFF, _integer(0, 0xFFFF_FFFF))
    persistent_client_expiration: int | None = _field(None, _optional(_duration))
    sys_interval: float = _field(10.0, _seconds(positive=False))
    persistence: bool = _field(False, _boolean)
    persistence_location: str = _field("./data", _text)
    durability: Durability = field(
        default="ack", metadata={"check": _choice(*get_args(Durability))}
    )
    flush_interval_ms: int = _field(50, _integer(1, 60_000))
    log_level: LogLevel = field(default="info", metadata={"check": _choice(*get_args(LogLevel))})
    use_uvloop: bool = _field(True, _boolean)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], *, source: str) -> BrokerConfig:
        """Validate config keys (as parsed from TOML) and build the config.

        Args:
            mapping: Top-level keys; ``listener`` holds a list of tables (mappings or
                :class:`ListenerConfig`). Missing keys keep their defaults.
            source: Where the mapping came from: the ``SOURCE`` in ``ConfigError.where``.

        Raises:
            ConfigError: For an unknown key, or a value of the wrong type or out of range.
        """
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            where = f"{source}:{key}"
            if key in _BROKER_CHECKS:
                values[key] = _BROKER_CHECKS[key](value, where)
            elif key not in _TOP_LISTENER_KEYS:
                raise _unknown(key, where, _BROKER_KEYS, _LISTENER_CHECKS, "in [[listener]]")
        values["listeners"] = _listeners(mapping, source)
        return cls(**values)

    @classmethod
    def from_kwargs(cls, **kwargs: object) -> BrokerConfig:
        """Build a config from keyword arguments named like the config keys (``listener=[...]``).

        Raises:
            ConfigError: As :meth:`from_mapping`, with ``where`` like ``"keyword:max_qos"``.
        """
        return cls.from_mapping(kwargs, source="keyword")

    def replace(self, **changes: object) -> BrokerConfig:
        """Return a copy with some fields changed, validated like :meth:`from_kwargs`.

        ``listeners`` takes listener configs or tables; ``port`` and ``bind_address`` replace the
        listeners with one default listener changed by them, as in :meth:`from_kwargs`.

        Raises:
            ConfigError: If the result is invalid; ``where`` starts with ``"keyword:"``.
        """
        mapping = self.to_dict()
        if "listeners" in changes:
            mapping["listener"] = changes.pop("listeners")
        elif not changes.keys().isdisjoint(_SHORTHAND):
            del mapping["listener"]
        mapping.update(changes)
        return BrokerConfig.from_mapping(mapping, source="keyword")

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain data keyed like the config file, for display.

        Listeners are under ``listener`` as a list of dicts and unset (None) values are left out,
        so ``BrokerConfig.from_mapping(config.to_dict(), source=...)`` gives an equal config.
        """
        data = _plain(self)
        data["listener"] = [_plain(listener) for listener in data.pop("listeners")]
        return data


def load_toml(path: str | os.PathLike[str]) -> BrokerConfig:
    """Read a TOML config file and validate it with :meth:`BrokerConfig.from_mapping`.

    Raises:
        ConfigError: If the file cannot be read, is not valid TOML (the reason gives the line
            and column) or is not a valid configuration. ``where`` starts with ``path`` as given.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(source, f"cannot read the file: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(source, f"invalid TOML: {exc}") from exc
    return BrokerConfig.from_mapping(data, source=source)


# ---------------------------------------------------------------------------------------------
# Mapping -> dataclasses; the key tables come from the fields' metadata.
_LISTENER_CHECKS: dict[str, _Check] = {f.name: f.metadata["check"] for f in fields(ListenerConfig)}
_BROKER_CHECKS: dict[str, _Check] = {
    f.name: f.metadata["check"] for f in fields(BrokerConfig) if "check" in f.metadata
}
_SHORTHAND = ("port", "bind_address")  # top-level keys that change the default listener
_TOP_LISTENER_KEYS = ("listener", *_SHORTHAND)
_BROKER_KEYS = (*_BROKER_CHECKS, *_TOP_LISTENER_KEYS)


def _unknown(
    key: str, where: str, known: Iterable[str], elsewhere: Iterable[str], place: str
) -> ConfigError:
    if key in elsewhere:
        # e.g. a top-level key written below a [[listener]] header, which TOML puts in there
        return ConfigError(where, f"{key!r} is not accepted here; it belongs {place}")
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(where, f"unknown key {key!r}{hint}")


def _plain(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj) if getattr(obj, f.name) is not None}


def _listeners(mapping: Mapping[str, object], source: str) -> tuple[ListenerConfig, ...]:
    shorthand = {key: mapping[key] for key in _SHORTHAND if key in mapping}
    if "listener" not in mapping:
        default = {"port": _DEFAULT_LISTENER.port, "bind_address": _DEFAULT_LISTENER.bind_address}
        return (_listener({**default, **shorthand}, f"{source}:"),)
    if shorthand:
        reason = "cannot be combined with [[listener]] tables; set it inside each table instead"
        raise ConfigError(f"{source}:{next(iter(shorthand))}", reason)
    where = f"{source}:listener"
    tables = mapping["listener"]
    if not isinstance(tables, list | tuple):
        raise ConfigError(where, f"expected [[listener]] tables, got {_describe(tables)}")
    if not tables:
        raise ConfigError(where, "needs at least one [[listener]] table")
    listeners: list[ListenerConfig] = []
    seen: dict[tuple[str, int], int] = {}
    for index, table in enumerate(tables):
        prefix = f"{where}[{index}]"
        if isinstance(table, ListenerConfig):
            table = _plain(table)
        if not isinstance(table, Mapping):
            raise ConfigError(prefix, f"expected a table, got {_describe(table)}")
        listener = _listener(table, prefix + ".")
        address = (listener.bind_address, listener.port)
        if listener.port and address in seen:  # port 0 binds a fresh ephemeral port every time
            reason = f"{listener.bind_address}:{listener.port} is already used by listener"
            raise ConfigError(prefix + ".port", f"{reason}[{seen[address]}]")
        seen[address] = index
        listeners.append(listener)
    return tuple(listeners)


def _listener(table: Mapping[str, object], prefix: str) -> ListenerConfig:
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _LISTENER_CHECKS:
            place = "at the top level, above the first [[listener]] table"
            raise _unknown(key, prefix + key, _LISTENER_CHECKS, _BROKER_KEYS, place)
        values[key] = _LISTENER_CHECKS[key](value, prefix + key)
    if "port" not in values:
        raise ConfigError(prefix + "port", "is required in every [[listener]] table")
    if not values.get("ws_path", "/").startswith("/"):
        raise ConfigError(prefix + "ws_path", f"must start with '/', got {values['ws_path']!r}")
    protocol = values.get("protocol", "mqtt")
    if protocol in _TLS_PROTOCOLS:
        for key in ("certfile", "keyfile"):
            if values.get(key) is None:
                raise ConfigError(prefix + key, f"is required when protocol is {protocol!r}")
        if values.get("require_certificate") and values.get("cafile") is None:
            raise ConfigError(prefix + "cafile", "is required when require_certificate is true")
        if values.get("use_identity_as_username") and not values.get("require_certificate"):
            reason = "needs require_certificate = true (the identity is the client certificate)"
            raise ConfigError(prefix + "use_identity_as_username", reason)
        if values.get("proxy_protocol") and protocol == "wss":
            # The websockets server runs TLS before any byte reaches us; an 'mqtt+tls' listener
            # reads the header first and then starts TLS itself.
            reason = "is not supported on 'wss' listeners; terminate TLS at the proxy"
            raise ConfigError(prefix + "proxy_protocol", reason)
    else:
        for key in ("certfile", "keyfile", "cafile", "require_certificate", "ciphers"):
            if values.get(key):
                reason = f"applies only to 'mqtt+tls' and 'wss' listeners, not {protocol!r}"
                raise ConfigError(prefix + key, reason)
        for key, default in (("tls_version", "tlsv1.2"), ("use_identity_as_username", False)):
            if values.get(key, default) != default:
                reason = f"applies only to 'mqtt+tls' and 'wss' listeners, not {protocol!r}"
                raise ConfigError(prefix + key, reason)
    return ListenerConfig(**values)
