"""Broker configuration: defaults, TOML files, keyword arguments and every kind of error."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from wrenmq.broker.config import BrokerConfig, ListenerConfig, load_toml
from wrenmq.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "wrenmq.toml.example"

FULL = """\
allow_anonymous = false
password_file = "/etc/wrenmq/passwd"
acl_file = "/etc/wrenmq/acl"
auth_plugins = ["mycompany.auth:DatabaseAuth"]
auth_cache_ttl = 30
auth_timeout = 2
max_keepalive = 600
connect_timeout = 2.5
max_inflight_messages = 100
max_queued_messages = 5000
max_queued_bytes = 1048576
queue_qos0_messages = true
message_size_limit = 65536
max_packet_size = 131072
max_connections = 5000
max_connections_per_ip = 20
connection_rate_per_ip = 0.5
message_rate_limit = 100
byte_rate_limit = 65536
rate_limit_action = "disconnect"
max_topic_alias = 0
max_subscriptions_per_client = 50
max_topic_levels = 16
retain_available = false
retained_messages_max_count = 10000
retained_message_max_size = 4096
max_qos = 1
wildcard_subscription_available = false
shared_subscription_available = false
subscription_identifier_available = false
session_expiry_max = 86400
persistent_client_expiration = "2w"
sys_interval = 0
persistence = true
persistence_location = "/var/lib/wrenmq"
durability = "periodic"
flush_interval_ms = 200
log_level = "debug"
use_uvloop = false

[[listener]]
port = 1883

[[listener]]
port = 8883
bind_address = "::"
protocol = "mqtt+tls"
certfile = "server.crt"
keyfile = "server.key"
cafile = "ca.crt"
require_certificate = true
allow_anonymous = true
max_connections = 100
ciphers = "ECDHE+AESGCM"
tls_version = "tlsv1.3"
use_identity_as_username = true

[[listener]]
port = 0
bind_address = "127.0.0.1"
protocol = "ws"
ws_path = "/ws"
max_connections = -1
proxy_protocol = true

[[listener]]
port = 8884
protocol = "wss"
certfile = "server.crt"
keyfile = "server.key"
"""


def write(tmp_path: Path, text: str, name: str = "wrenmq.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> tuple[Path, ConfigError]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    return path, info.value


# ---------------------------------------------------------------------------------------------
# Defaults and shapes


def test_defaults() -> None:
    config = BrokerConfig()
    assert config.listeners == (
        ListenerConfig(port=1883, bind_address="127.0.0.1", protocol="mqtt"),
    )
    assert config.allow_anonymous is True
    assert config.password_file is None and config.acl_file is None
    assert config.max_keepalive == 65535
    assert config.connect_timeout == 10.0
    assert config.max_inflight_messages == 20
    assert config.max_queued_messages == 1000
    assert config.max_queued_bytes == 0
    assert config.queue_qos0_messages is False
    assert config.message_size_limit == 0
    assert config.max_packet_size == 268435460
    assert config.max_connections == -1
    assert config.max_connections_per_ip == 0
    assert config.connection_rate_per_ip == 0.0
    assert config.message_rate_limit == 0.0
    assert config.byte_rate_limit == 0
    assert config.rate_limit_action == "throttle"
    assert config.max_topic_alias == 10
    assert config.max_subscriptions_per_client == 0
    assert config.max_topic_levels == 0
    assert config.retain_available is True
    assert config.retained_messages_max_count == 0
    assert config.retained_message_max_size == 0
    assert config.max_qos == 2
    assert config.wildcard_subscription_available is True
    assert config.shared_subscription_available is True
    assert config.subscription_identifier_available is True
    assert config.session_expiry_max == 0xFFFFFFFF
    assert config.persistent_client_expiration is None
    assert config.sys_interval == 10.0
    assert config.persistence is False
    assert config.persistence_location == "./data"
    assert config.log_level == "info"
    assert config.use_uvloop is True


def test_empty_file_and_no_kwargs_give_the_defaults(tmp_path: Path) -> None:
    assert load_toml(write(tmp_path, "")) == BrokerConfig()
    assert BrokerConfig.from_kwargs() == BrokerConfig()


def test_listener_defaults() -> None:
    listener = ListenerConfig(port=1883)
    assert listener.bind_address == "0.0.0.0"
    assert listener.protocol == "mqtt"
    assert (listener.certfile, listener.keyfile, listener.cafile) == (None, None, None)
    assert listener.require_certificate is False
    assert listener.ws_path == "/mqtt"
    assert listener.allow_anonymous is None and listener.max_connections is None
    assert listener.ciphers is None and listener.tls_version == "tlsv1.2"
    assert listener.use_identity_as_username is False and listener.proxy_protocol is False


def test_configs_are_frozen_and_slotted() -> None:
    config = BrokerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_qos = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listeners[0].port = 1  # type: ignore[misc]
    assert not hasattr(config, "__dict__")
    assert not hasattr(config.listeners[0], "__dict__")


# ---------------------------------------------------------------------------------------------
# TOML files


def test_full_file_with_every_key(tmp_path: Path) -> None:
    config = load_toml(write(tmp_path, FULL))
    assert config == BrokerConfig(
        listeners=(
            ListenerConfig(port=1883),
            ListenerConfig(
                port=8883,
                bind_address="::",
                protocol="mqtt+tls",
                certfile="server.crt",
                keyfile="server.key",
                cafile="ca.crt",
                require_certificate=True,
                allow_anonymous=True,
                max_connections=100,
                ciphers="ECDHE+AESGCM",
                tls_version="tlsv1.3",
                use_identity_as_username=True,
            ),
            ListenerConfig(
                port=0,
                bind_address="127.0.0.1",
                protocol="ws",
                ws_path="/ws",
                max_connections=-1,
                proxy_protocol=True,
            ),
            ListenerConfig(port=8884, protocol="wss", certfile="server.crt", keyfile="server.key"),
        ),
        allow_anonymous=False,
        password_file="/etc/wrenmq/passwd",
        acl_file="/etc/wrenmq/acl",
        auth_plugins=("mycompany.auth:DatabaseAuth",),
        auth_cache_ttl=30.0,
        auth_timeout=2.0,
        max_keepalive=600,
        connect_timeout=2.5,
        max_inflight_messages=100,
        max_queued_messages=5000,
        max_queued_bytes=1048576,
        queue_qos0_messages=True,
        message_size_limit=65536,
        max_packet_size=131072,
        max_connections=5000,
        max_connections_per_ip=20,
        connection_rate_per_ip=0.5,
        message_rate_limit=100.0,
        byte_rate_limit=65536,
        rate_limit_action="disconnect",
        max_topic_alias=0,
        max_subscriptions_per_client=50,
        max_topic_levels=16,
        retain_available=False,
        retained_messages_max_count=10000,
        retained_message_max_size=4096,
        max_qos=1,
        wildcard_subscription_available=False,
        shared_subscription_available=False,
        subscription_identifier_available=False,
        session_expiry_max=86400,
        persistent_client_expiration=14 * 86400,
        sys_interval=0.0,
        persistence=True,
        persistence_location="/var/lib/wrenmq",
        durability="periodic",
        flush_interval_ms=200,
        log_level="debug",
        use_uvloop=False,
    )
    # The full file sets every field to something other than its default.
    default = BrokerConfig()
    for field in dataclasses.fields(BrokerConfig):
        assert getattr(config, field.name) != getattr(default, field.name), field.name
    assert isinstance(config.sys_interval, float)
    assert isinstance(config.message_rate_limit, float)


def test_load_accepts_str_paths(tmp_path: Path) -> None:
    assert load_toml(str(write(tmp_path, "max_qos = 1\n"))).max_qos == 1


def test_listener_tables_default_to_all_interfaces(tmp_path: Path) -> None:
    config = load_toml(write(tmp_path, "[[listener]]\nport = 1884\n\n[[listener]]\nport = 0\n"))
    assert config.listeners == (ListenerConfig(port=1884), ListenerConfig(port=0))
    assert config.listeners[0].bind_address == "0.0.0.0"


def test_ephemeral_ports_may_repeat(tmp_path: Path) -> None:
    config = load_toml(write(tmp_path, "[[listener]]\nport = 0\n[[listener]]\nport = 0\n"))
    assert len(config.listeners) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("port = 1884\n", ListenerConfig(port=1884, bind_address="127.0.0.1")),
        ('bind_address = "0.0.0.0"\n', ListenerConfig(port=1883, bind_address="0.0.0.0")),
        ('port = 0\nbind_address = "::1"\n', ListenerConfig(port=0, bind_address="::1")),
    ],
)
def test_top_level_port_and_bind_address_change_the_default_listener(
    tmp_path: Path, text: str, expected: ListenerConfig
) -> None:
    assert load_toml(write(tmp_path, text)).listeners == (expected,)


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        ("2h", 2 * 3600),
        ("14d", 14 * 86400),
        ("1w", 7 * 86400),
        ("3m", 3 * 30 * 86400),
        ("1y", 365 * 86400),
        (3600, 3600),
    ],
)
def test_persistent_client_expiration_durations(duration: str | int, seconds: int) -> None:
    config = BrokerConfig.from_kwargs(persistent_client_expiration=duration)
    assert config.persistent_client_expiration == seconds


def test_example_file_documents_every_key_and_loads_as_the_defaults() -> None:
    assert load_toml(EXAMPLE) == BrokerConfig()
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = {f.name for f in dataclasses.fields(BrokerConfig)} - {"listeners"}
    keys |= {f.name for f in dataclasses.fields(ListenerConfig)} | {"listener"}
    missing = [key for key in keys if not re.search(rf"^#?\s*(\[\[)?{key}\b", text, re.M)]
    assert not missing


# ---------------------------------------------------------------------------------------------
# Errors in files: exact `where`, readable reason


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        # unknown keys, with a suggestion
        (
            "max_keeplive = 60\n",
            "max_keeplive",
            "unknown key 'max_keeplive'; did you mean 'max_keepalive'?",
        ),
        ("frobnicate = 1\n", "frobnicate", "unknown key 'frobnicate'"),
        (
            "[[listener]]\nport = 1\nbind_adress = 'x'\n",
            "listener[0].bind_adress",
            "unknown key 'bind_adress'; did you mean 'bind_address'?",
        ),
        (
            "[listeners]\nport = 1\n",
            "listeners",
            "unknown key 'listeners'; did you mean 'listener'?",
        ),
        # a key in the wrong place
        (
            'certfile = "a.crt"\n',
            "certfile",
            "'certfile' is not accepted here; it belongs in [[listener]]",
        ),
        (
            "[[listener]]\nport = 1883\nmax_keepalive = 60\n",
            "listener[0].max_keepalive",
            "'max_keepalive' is not accepted here; it belongs at the top level, above the first "
            "[[listener]] table",
        ),
        # wrong types: bool is not int
        (
            "max_inflight_messages = true\n",
            "max_inflight_messages",
            "expected an integer, got boolean True",
        ),
        (
            "[[listener]]\nport = false\n",
            "listener[0].port",
            "expected an integer, got boolean False",
        ),
        ("max_qos = 1.0\n", "max_qos", "expected an integer, got float 1.0"),
        ('max_keepalive = "60"\n', "max_keepalive", "expected an integer, got string '60'"),
        ('persistence = "yes"\n', "persistence", "expected true or false, got string 'yes'"),
        ("allow_anonymous = 1\n", "allow_anonymous", "expected true or false, got integer 1"),
        (
            "connect_timeout = true\n",
            "connect_timeout",
            "expected a number of seconds, got boolean True",
        ),
        ("password_file = 5\n", "password_file", "expected a string, got integer 5"),
        ('persistence_location = ""\n', "persistence_location", "must not be empty"),
        (
            "[[listener]]\nport = 1\nallow_anonymous = 'no'\n",
            "listener[0].allow_anonymous",
            "expected true or false, got string 'no'",
        ),
        # out of range
        ("max_queued_bytes = -1\n", "max_queued_bytes", "must be at least 0, got -1"),
        ("max_queued_messages = 0\n", "max_queued_messages", "must be at least 1, got 0"),
        ("max_keepalive = 65536\n", "max_keepalive", "must be between 0 and 65535, got 65536"),
        (
            "max_inflight_messages = 0\n",
            "max_inflight_messages",
            "must be between 1 and 65535, got 0",
        ),
        ("max_packet_size = 31\n", "max_packet_size", "must be between 32 and 268435460, got 31"),
        (
            "message_size_limit = 268435456\n",
            "message_size_limit",
            "must be between 0 and 268435455, got 268435456",
        ),
        ("max_qos = 3\n", "max_qos", "must be between 0 and 2, got 3"),
        ("max_topic_alias = -1\n", "max_topic_alias", "must be between 0 and 65535, got -1"),
        (
            "session_expiry_max = 4294967296\n",
            "session_expiry_max",
            "must be between 0 and 4294967295, got 4294967296",
        ),
        ("max_connections = 0\n", "max_connections", "must be -1 (unlimited) or at least 1, got 0"),
        ("max_connections = -2\n", "max_connections", "must be at least -1, got -2"),
        (
            "max_connections_per_ip = -1\n",
            "max_connections_per_ip",
            "must be at least 0, got -1",
        ),
        ("byte_rate_limit = 1.5\n", "byte_rate_limit", "expected an integer, got float 1.5"),
        (
            "connection_rate_per_ip = -0.5\n",
            "connection_rate_per_ip",
            "must be a finite number 0 (unlimited) or more, got -0.5",
        ),
        (
            "message_rate_limit = inf\n",
            "message_rate_limit",
            "must be a finite number 0 (unlimited) or more, got inf",
        ),
        (
            'message_rate_limit = "10/s"\n',
            "message_rate_limit",
            "expected a number per second, got string '10/s'",
        ),
        (
            "connection_rate_per_ip = true\n",
            "connection_rate_per_ip",
            "expected a number per second, got boolean True",
        ),
        (
            "connect_timeout = 0\n",
            "connect_timeout",
            "must be a finite number greater than 0, got 0",
        ),
        (
            "connect_timeout = nan\n",
            "connect_timeout",
            "must be a finite number greater than 0, got nan",
        ),
        ("sys_interval = -1.5\n", "sys_interval", "must be a finite number 0 or more, got -1.5"),
        ("sys_interval = inf\n", "sys_interval", "must be a finite number 0 or more, got inf"),
        (
            "[[listener]]\nport = 70000\n",
            "listener[0].port",
            "must be between 0 and 65535, got 70000",
        ),
        ("port = -1\n", "port", "must be between 0 and 65535, got -1"),
        (
            "[[listener]]\nport = 1\nmax_connections = 0\n",
            "listener[0].max_connections",
            "must be -1 (unlimited) or at least 1, got 0",
        ),
        # choices
        (
            'rate_limit_action = "drop"\n',
            "rate_limit_action",
            "must be one of ['throttle', 'disconnect'], got 'drop'",
        ),
        (
            'log_level = "verbose"\n',
            "log_level",
            "must be one of ['debug', 'info', 'warning', 'error'], got 'verbose'",
        ),
        (
            '[[listener]]\nport = 1\n[[listener]]\nport = 2\nprotocol = "mqtts"\n',
            "listener[1].protocol",
            "must be one of ['mqtt', 'mqtt+tls', 'ws', 'wss'], got 'mqtts'",
        ),
        # durations
        (
            'persistent_client_expiration = "5x"\n',
            "persistent_client_expiration",
            "expected seconds or a duration like '2h', '14d', '1w', '3m' (30-day months) or '1y', "
            "got '5x'",
        ),
        ('persistent_client_expiration = "2 h"\n', "persistent_client_expiration", "got '2 h'"),
        ('persistent_client_expiration = "-1d"\n', "persistent_client_expiration", "got '-1d'"),
        (
            'persistent_client_expiration = "0d"\n',
            "persistent_client_expiration",
            "must be at least 1, got 0",
        ),
        (
            "persistent_client_expiration = 0\n",
            "persistent_client_expiration",
            "must be at least 1, got 0",
        ),
        (
            "persistent_client_expiration = true\n",
            "persistent_client_expiration",
            "expected an integer, got boolean True",
        ),
        # listener structure
        ("listener = 5\n", "listener", "expected [[listener]] tables, got integer 5"),
        ("[listener]\nport = 1\n", "listener", "expected [[listener]] tables, got table"),
        ("listener = []\n", "listener", "needs at least one [[listener]] table"),
        ("listener = [1]\n", "listener[0]", "expected a table, got integer 1"),
        (
            "[[listener]]\nbind_address = '::'\n",
            "listener[0].port",
            "is required in every [[listener]] table",
        ),
        (
            "port = 1884\n[[listener]]\nport = 1\n",
            "port",
            "cannot be combined with [[listener]] tables",
        ),
        (
            "[[listener]]\nport = 1883\n[[listener]]\nport = 1884\n[[listener]]\nport = 1883\n",
            "listener[2].port",
            "0.0.0.0:1883 is already used by listener[0]",
        ),
        (
            '[[listener]]\nport = 1\nprotocol = "ws"\nws_path = "mqtt"\n',
            "listener[0].ws_path",
            "must start with '/', got 'mqtt'",
        ),
        # TLS settings that contradict the protocol
        (
            '[[listener]]\nport = 8883\nprotocol = "mqtt+tls"\nkeyfile = "k"\n',
            "listener[0].certfile",
            "is required when protocol is 'mqtt+tls'",
        ),
        (
            '[[listener]]\nport = 8883\nprotocol = "wss"\ncertfile = "c"\n',
            "listener[0].keyfile",
            "is required when protocol is 'wss'",
        ),
        (
            '[[listener]]\nport = 8883\nprotocol = "mqtt+tls"\ncertfile = "c"\nkeyfile = "k"\n'
            "require_certificate = true\n",
            "listener[0].cafile",
            "is required when require_certificate is true",
        ),
        (
            '[[listener]]\nport = 1883\ncertfile = "c"\n',
            "listener[0].certfile",
            "applies only to 'mqtt+tls' and 'wss' listeners, not 'mqtt'",
        ),
        (
            '[[listener]]\nport = 80\nprotocol = "ws"\nrequire_certificate = true\n',
            "listener[0].require_certificate",
            "applies only to 'mqtt+tls' and 'wss' listeners, not 'ws'",
        ),
        (
            '[[listener]]\nport = 1883\nciphers = "HIGH"\n',
            "listener[0].ciphers",
            "applies only to 'mqtt+tls' and 'wss' listeners, not 'mqtt'",
        ),
        (
            '[[listener]]\nport = 80\nprotocol = "ws"\ntls_version = "tlsv1.3"\n',
            "listener[0].tls_version",
            "applies only to 'mqtt+tls' and 'wss' listeners, not 'ws'",
        ),
        (
            "[[listener]]\nport = 1883\nuse_identity_as_username = true\n",
            "listener[0].use_identity_as_username",
            "applies only to 'mqtt+tls' and 'wss' listeners, not 'mqtt'",
        ),
        (
            '[[listener]]\nport = 8883\nprotocol = "mqtt+tls"\ncertfile = "c"\nkeyfile = "k"\n'
            'tls_version = "tlsv1.1"\n',
            "listener[0].tls_version",
            "must be one of ['tlsv1.2', 'tlsv1.3'], got 'tlsv1.1'",
        ),
        (
            '[[listener]]\nport = 8883\nprotocol = "mqtt+tls"\ncertfile = "c"\nkeyfile = "k"\n'
            'ciphers = ""\n',
            "listener[0].ciphers",
            "must not be empty",
        ),
        (
            '[[listener]]\nport = 8883\nprotocol = "wss"\ncertfile = "c"\nkeyfile = "k"\n'
            'cafile = "ca"\nuse_identity_as_username = true\n',
            "listener[0].use_identity_as_username",
            "needs require_certificate = true",
        ),
        (
            '[[listener]]\nport = 8883\nprotocol = "wss"\ncertfile = "c"\nkeyfile = "k"\n'
            "proxy_protocol = true\n",
            "listener[0].proxy_protocol",
            "is not supported on 'wss' listeners; terminate TLS at the proxy",
        ),
        (
            "[[listener]]\nport = 1883\nproxy_protocol = 1\n",
            "listener[0].proxy_protocol",
            "expected true or false, got integer 1",
        ),
    ],
)
def test_file_errors_name_file_and_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path, error = load_error(tmp_path, text)
    assert error.where == f"{path}:{key}"
    assert reason in error.reason
    assert str(error) == f"{error.where}: {error.reason}"


def test_first_error_in_file_order_is_reported(tmp_path: Path) -> None:
    path, error = load_error(tmp_path, "max_qos = 9\nmax_keepalive = -1\n")
    assert error.where == f"{path}:max_qos"


def test_long_values_are_shortened_in_reasons(tmp_path: Path) -> None:
    _, error = load_error(tmp_path, f'max_qos = "{"x" * 500}"\n')
    assert len(error.reason) < 100


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path, error = load_error(tmp_path, "max_qos = 1\nmax_keepalive =\n")
    assert error.where == str(path)
    assert error.reason.startswith("invalid TOML: ")
    assert "line 2" in error.reason
    assert isinstance(error.__cause__, ValueError)


def test_toml_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'persistence_location = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert info.value.where == str(path)
    assert info.value.reason.startswith("invalid TOML: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert info.value.where == str(path)
    assert info.value.reason == "cannot read the file: No such file or directory"
    assert isinstance(info.value.__cause__, FileNotFoundError)


# ---------------------------------------------------------------------------------------------
# Keyword arguments, replace(), to_dict()


def test_from_kwargs() -> None:
    config = BrokerConfig.from_kwargs(
        max_keepalive=60,
        allow_anonymous=False,
        password_file=None,
        persistent_client_expiration="1w",
        listener=[{"port": 0}, ListenerConfig(port=8080, protocol="ws")],
    )
    assert config.max_keepalive == 60
    assert config.allow_anonymous is False
    assert config.persistent_client_expiration == 7 * 86400
    assert config.listeners == (ListenerConfig(port=0), ListenerConfig(port=8080, protocol="ws"))


def test_from_kwargs_shorthand_port() -> None:
    config = BrokerConfig.from_kwargs(port=0)
    assert config.listeners == (ListenerConfig(port=0, bind_address="127.0.0.1"),)


@pytest.mark.parametrize(
    ("kwargs", "where", "reason"),
    [
        ({"max_keepalive": True}, "keyword:max_keepalive", "expected an integer, got boolean True"),
        ({"max_keepalive": -1}, "keyword:max_keepalive", "must be between 0 and 65535, got -1"),
        (
            {"max_inflight": 5},
            "keyword:max_inflight",
            "unknown key 'max_inflight'; did you mean 'max_inflight_messages'?",
        ),
        (
            {"listeners": []},
            "keyword:listeners",
            "unknown key 'listeners'; did you mean 'listener'?",
        ),
        (
            {"allow_anonymous": None},
            "keyword:allow_anonymous",
            "expected true or false, got NoneType None",
        ),
        (
            {"listener": [{"port": 1, "protocol": "tcp"}]},
            "keyword:listener[0].protocol",
            "must be one of ['mqtt', 'mqtt+tls', 'ws', 'wss'], got 'tcp'",
        ),
        (
            {"listener": [ListenerConfig(port=99999)]},
            "keyword:listener[0].port",
            "must be between 0 and 65535, got 99999",
        ),
        ({"listener": ({"port": 1}, "x")}, "keyword:listener[1]", "expected a table, got string"),
    ],
)
def test_kwargs_errors(kwargs: dict[str, object], where: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        BrokerConfig.from_kwargs(**kwargs)
    assert info.value.where == where
    assert reason in info.value.reason


def test_every_field_is_a_keyword() -> None:
    default = BrokerConfig()
    kwargs = {f.name: getattr(default, f.name) for f in dataclasses.fields(BrokerConfig)}
    kwargs["listener"] = kwargs.pop("listeners")
    assert BrokerConfig.from_kwargs(**kwargs) == default


def test_from_mapping_uses_the_source_in_where() -> None:
    with pytest.raises(ConfigError) as info:
        BrokerConfig.from_mapping({"listener": [{"port": "x"}]}, source="env")
    assert info.value.where == "env:listener[0].port"


def test_replace_revalidates() -> None:
    config = BrokerConfig()
    changed = config.replace(max_qos=1, persistent_client_expiration="1d")
    assert (changed.max_qos, changed.persistent_client_expiration) == (1, 86400)
    assert config.max_qos == 2
    with pytest.raises(ConfigError) as info:
        config.replace(max_qos=5)
    assert info.value.where == "keyword:max_qos"
    with pytest.raises(ConfigError) as info:
        config.replace(max_qoss=1)
    assert info.value.where == "keyword:max_qoss"
    assert "did you mean 'max_qos'?" in info.value.reason


def test_replace_listeners_and_clear_optional_values() -> None:
    config = BrokerConfig.from_kwargs(password_file="p", persistent_client_expiration=60)
    changed = config.replace(
        listeners=(ListenerConfig(port=1),), password_file=None, persistent_client_expiration=None
    )
    assert changed.listeners == (ListenerConfig(port=1),)
    assert changed.password_file is None and changed.persistent_client_expiration is None
    with pytest.raises(ConfigError) as info:
        config.replace(listeners=(ListenerConfig(port=1, protocol="wss"),))
    assert info.value.where == "keyword:listener[0].certfile"


def test_replace_port_and_bind_address_set_the_default_listener(tmp_path: Path) -> None:
    config = load_toml(write(tmp_path, FULL))
    assert config.replace(port=0).listeners == (ListenerConfig(port=0, bind_address="127.0.0.1"),)
    changed = config.replace(bind_address="0.0.0.0", max_qos=0)
    assert changed.listeners == (ListenerConfig(port=1883, bind_address="0.0.0.0"),)
    assert changed.max_qos == 0
    with pytest.raises(ConfigError) as info:
        config.replace(port=1, listeners=(ListenerConfig(port=2),))
    assert info.value.where == "keyword:port"


def test_to_dict_round_trips(tmp_path: Path) -> None:
    config = load_toml(write(tmp_path, FULL))
    data = config.to_dict()
    assert data["max_qos"] == 1
    assert data["listener"][2] == {
        "port": 0,
        "bind_address": "127.0.0.1",
        "protocol": "ws",
        "require_certificate": False,
        "ws_path": "/ws",
        "max_connections": -1,
        "tls_version": "tlsv1.2",
        "use_identity_as_username": False,
        "proxy_protocol": True,
    }
    assert BrokerConfig.from_mapping(data, source="dict") == config
    assert BrokerConfig.from_mapping(BrokerConfig().to_dict(), source="dict") == BrokerConfig()


def test_to_dict_leaves_out_unset_values() -> None:
    data = BrokerConfig().to_dict()
    assert "password_file" not in data and "persistent_client_expiration" not in data
    assert "listeners" not in data
    assert data["listener"] == [
        {
            "port": 1883,
            "bind_address": "127.0.0.1",
            "protocol": "mqtt",
            "require_certificate": False,
            "ws_path": "/mqtt",
            "tls_version": "tlsv1.2",
            "use_identity_as_username": False,
            "proxy_protocol": False,
        }
    ]
