"""What ``wrenmq pub`` and ``wrenmq sub`` share: the connection flags and how a command runs.

The flags are mosquitto_pub/mosquitto_sub's, spelled the same (``-h -p -L -V -i -I -u -P -k -c -x
-D --will-* --cafile --capath --cert --key --insecure --tls-use-os-certs --tls-version --ciphers -d
--quiet``), so scripts written for the Mosquitto clients carry over. ``-h`` is the host: help is
``--help`` only.

``-D COMMAND NAME VALUE [VALUE2]`` (MQTT 5 properties) is checked in ``props``.

Exit status: 0 success; 1 a runtime failure (cannot connect, refused, a file that cannot be
read, a publish or subscription refused, the connection lost); 2 a usage error (bad or
contradictory flags); 27 ``sub -W`` timed out (Mosquitto's MOSQ_ERR_TIMEOUT, so scripts keep
working); 130 Ctrl-C; 141 the reader of stdout went away (what SIGPIPE would give); 143 SIGTERM.
Ctrl-C and SIGTERM still send DISCONNECT, so the broker does not publish the will. Every error
is one line on stderr, ``wrenmq pub: <why>``; ``--quiet`` silences them.

Differences from the Mosquitto clients, on purpose:

* the default protocol is MQTT 5 (``-V 311`` for 3.1.1), as for wrenmq's ``Client``;
* ``-D`` and ``-x`` with MQTT 3.1/3.1.1 are usage errors (Mosquitto ignores them silently);
* ``-A``, ``--unix``, ``--proxy``, ``--psk``, ``--tls-engine``, ``--keyform`` and ``--tls-alpn``
  do not exist; ``--nodelay`` is accepted and does nothing (asyncio turns Nagle off already);
* a value that starts with ``-`` and is not a number must be attached: ``-m-x`` or
  ``--message=-x`` (argparse reads ``-m -x`` as two flags).

Imports anything below it (the cli layer is the top); imported by ``pub`` and ``sub`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from wrenmq.cli.props import PropertyAction
from wrenmq.client import Client, DisconnectedError, Will
from wrenmq.client.scram import METHOD as SCRAM_METHOD
from wrenmq.client.scram import ScramSha256Authenticator
from wrenmq.codec.properties import WILL, Properties
from wrenmq.codec.reason_codes import ReasonCode
from wrenmq.codec.topics import validate_topic_filter, validate_topic_name
from wrenmq.codec.types import PacketType
from wrenmq.errors import ConnectError, MQTTError, WrenError

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "Failure",
    "Settings",
    "UsageError",
    "add_connection_arguments",
    "check_topic_filter",
    "check_topic_name",
    "connect",
    "describe_code",
    "describe_error",
    "disconnect",
    "int_range",
    "log",
    "parse_version",
    "qos_type",
    "run_command",
    "settings_from_args",
]

log = logging.getLogger("wrenmq.cli")

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_TIMEOUT: Final = 27  # mosquitto_sub -W: MOSQ_ERR_TIMEOUT
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT
EXIT_PIPE: Final = 141  # 128 + SIGPIPE
EXIT_TERMINATED: Final = 143  # 128 + SIGTERM

VERSIONS: Final = {"mqttv5": 5, "5": 5, "mqttv311": 4, "311": 4, "mqttv31": 3, "31": 3}
_VERSION_NAMES: Final = {5: "5.0", 4: "3.1.1", 3: "3.1"}
SESSION_FOREVER: Final = 0xFFFF_FFFF
_TLS_VERSIONS: Final = {
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
}


class UsageError(WrenError):
    """The flags are wrong or contradict each other (exit status 2)."""


class Failure(WrenError):
    """A readable reason the command failed at run time (exit status 1)."""


# CONNECT properties that are ``Client`` keyword arguments of their own.
_CONNECT_ARGS: Final = {
    "receive_maximum": "receive_maximum",
    "maximum_packet_size": "max_packet_size",
    "topic_alias_maximum": "topic_alias_maximum",
    "user_properties": "user_properties",
}


# -- argument types ------------------------------------------------------------------------------


def parse_version(text: str) -> int:
    """``-V``: mqttv5 / 5, mqttv311 / 311, mqttv31 / 31 -> protocol level 5, 4, 3."""
    try:
        return VERSIONS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown protocol version {text!r} (use mqttv5, mqttv311 or mqttv31)"
        ) from None


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a decimal integer within ``low..high``."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def qos_type(text: str) -> int:
    """An argparse type: a QoS, 0, 1 or 2."""
    if text not in ("0", "1", "2"):
        raise argparse.ArgumentTypeError(f"invalid QoS {text!r} (use 0, 1 or 2)")
    return int(text)


def _session_expiry(text: str) -> int:
    if text in ("-1", "∞", "inf"):
        return SESSION_FOREVER
    return int_range(0, SESSION_FOREVER)(text)


def add_connection_arguments(p: argparse.ArgumentParser, *, commands: Sequence[str]) -> None:
    """Add the flags both commands share; ``commands`` are the ``-D`` commands allowed."""
    p.add_argument("--help", action="help", help="show this help and exit")
    g = p.add_argument_group("connection")
    g.add_argument("-h", "--host", help="broker host (default localhost)")
    g.add_argument(
        "-p", "--port", type=int_range(1, 65535), help="port (default 1883, 8883 with TLS)"
    )
    g.add_argument(
        "-L", "--url", metavar="URL", help="mqtt(s)://[user[:password]@]host[:port]/topic"
    )
    g.add_argument(
        "-V",
        "--protocol-version",
        dest="version",
        type=parse_version,
        default=5,
        metavar="VERSION",
        help="mqttv5 or 5 (default), mqttv311 or 311, mqttv31 or 31",
    )
    g.add_argument("-i", "--id", dest="client_id", help="client id (default: a random one)")
    g.add_argument("-I", "--id-prefix", help="client id: this prefix and the process id")
    g.add_argument("-u", "--username", help="user name")
    g.add_argument("-P", "--pw", dest="password", help="password")
    g.add_argument(
        "--scram",
        action="store_true",
        help="log in with MQTT 5 SCRAM-SHA-256 as -u/-P (the password is never sent)",
    )
    g.add_argument(
        "-k", "--keepalive", type=int_range(0, 0xFFFF), default=60, help="seconds (default 60)"
    )
    g.add_argument(
        "-c",
        "--disable-clean-session",
        dest="persistent",
        action="store_true",
        help="resume the session and keep it after disconnecting (needs -i or -I)",
    )
    g.add_argument(
        "-x",
        "--session-expiry-interval",
        dest="session_expiry",
        type=_session_expiry,
        metavar="SECONDS",
        help="MQTT 5 session expiry; -1 never (default: -1 with -c, else 0)",
    )
    g.add_argument(
        "-D",
        "--property",
        dest="properties",
        action=PropertyAction,
        commands=commands,
        help=f"MQTT 5 property, e.g. -D publish user-property k v ({', '.join(commands)})",
    )
    g.add_argument("--will-topic", help="topic of the will message")
    g.add_argument("--will-payload", help="payload of the will message")
    g.add_argument("--will-qos", type=qos_type, default=0, help="QoS of the will message")
    g.add_argument("--will-retain", action="store_true", help="retain the will message")
    g.add_argument("--nodelay", action="store_true", help="accepted; Nagle is always off")
    _add_tls_arguments(p)
    o = p.add_argument_group("diagnostics")
    o.add_argument("-d", "--debug", action="store_true", help="print what happens on stderr")
    o.add_argument("--quiet", action="store_true", help="print no error messages")


def _add_tls_arguments(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("TLS (on with --cafile, --capath, --tls-use-os-certs or mqtts://)")
    t.add_argument("--cafile", help="trusted CA certificates (PEM)")
    t.add_argument("--capath", help="directory of trusted CA certificates")
    t.add_argument("--tls-use-os-certs", action="store_true", help="trust the system CAs")
    t.add_argument("--cert", help="client certificate (PEM)")
    t.add_argument("--key", help="client private key (PEM)")
    t.add_argument("--insecure", action="store_true", help="do not check the server's host name")
    t.add_argument("--tls-version", choices=sorted(_TLS_VERSIONS), help="lowest TLS version")
    t.add_argument("--ciphers", help="OpenSSL cipher list")


# -- the validated settings ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """Where and how to connect, checked; ``client()`` makes the ``Client``."""

    host: str
    port: int
    version: int
    client_kwargs: dict[str, Any]
    url_topic: str | None
    properties: dict[int, dict[str, Any]]
    disconnect_session_expiry: int | None

    def client(self, **extra: Any) -> Client:
        """A ``Client`` for these settings; ``extra`` adds keyword arguments."""
        return Client(self.host, self.port, **self.client_kwargs, **extra)

    def packet_properties(self, packet: int) -> dict[str, Any]:
        """The ``-D`` values for ``packet`` (a ``PacketType`` or ``WILL``)."""
        return self.properties.get(packet, {})

    @property
    def address(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"


def check_topic_name(topic: str, what: str = "topic") -> None:
    """Raise ``UsageError`` unless ``topic`` is a valid topic name (no wildcards)."""
    try:
        validate_topic_name(topic)
    except MQTTError as exc:
        raise UsageError(f"invalid {what} {topic!r}: {exc.message}") from None


def check_topic_filter(topic_filter: str, what: str = "topic filter") -> None:
    """Raise ``UsageError`` unless ``topic_filter`` is a valid topic filter."""
    try:
        validate_topic_filter(topic_filter)
    except MQTTError as exc:
        raise UsageError(f"invalid {what} {topic_filter!r}: {exc.message}") from None


def _url_parts(url: str | None) -> dict[str, Any]:
    if not url:
        return {}
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise UsageError(f"-L: unsupported URL scheme {parts.scheme!r} (use mqtt or mqtts)")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"-L: invalid port in {url!r}") from None
    if not parts.hostname:
        raise UsageError(f"-L: no host in {url!r}")
    return {
        "tls": parts.scheme == "mqtts",
        "host": parts.hostname,
        "port": port,
        "username": unquote(parts.username) if parts.username is not None else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "topic": unquote(parts.path[1:]) or None,
    }


def _tls_context(args: argparse.Namespace, url_tls: bool) -> ssl.SSLContext | None:
    if not (args.cafile or args.capath or args.tls_use_os_certs or url_tls):
        for flag, value in (
            ("--cert", args.cert),
            ("--key", args.key),
            ("--insecure", args.insecure),
            ("--tls-version", args.tls_version),
            ("--ciphers", args.ciphers),
        ):
            if value:
                raise UsageError(f"{flag} needs TLS: add --cafile, --capath or --tls-use-os-certs")
        return None
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together")
    try:
        ctx = ssl.create_default_context(cafile=args.cafile, capath=args.capath)
    except OSError as exc:
        raise Failure(f"cannot load the CA certificates: {_why(exc)}") from None
    if args.tls_use_os_certs and (args.cafile or args.capath):
        ctx.load_default_certs()
    if args.cert:
        try:
            ctx.load_cert_chain(args.cert, args.key)
        except OSError as exc:
            raise Failure(f"cannot load --cert/--key: {_why(exc)}") from None
    if args.ciphers:
        try:
            ctx.set_ciphers(args.ciphers)
        except ssl.SSLError as exc:
            raise Failure(f"--ciphers {args.ciphers!r}: {_why(exc)}") from None
    if args.tls_version:
        ctx.minimum_version = _TLS_VERSIONS[args.tls_version]
    if args.insecure:
        ctx.check_hostname = False  # as Mosquitto's --insecure: the chain is still verified
    return ctx


def _will(args: argparse.Namespace, properties: dict[str, Any]) -> Will | None:
    if args.will_topic is None:
        if args.will_payload is not None or args.will_retain or args.will_qos or properties:
            raise UsageError(
                "--will-payload, --will-qos, --will-retain and -D will need --will-topic"
            )
        return None
    check_topic_name(args.will_topic, "will topic")
    payload = os.fsencode(args.will_payload) if args.will_payload is not None else b""
    return Will(args.will_topic, payload, args.will_qos, args.will_retain, Properties(**properties))


def _client_id(args: argparse.Namespace) -> str | None:
    client_id: str | None = args.client_id
    if args.id_prefix is not None:
        if client_id is not None:
            raise UsageError("-i and -I cannot be used together")
        client_id = f"{args.id_prefix}{os.getpid()}"
    if args.persistent and not client_id:
        raise UsageError("-c needs a client id (-i or -I): a session belongs to one client id")
    return client_id


def _connect_kwargs(connect_props: dict[str, Any]) -> dict[str, Any]:
    """``Client`` keyword arguments for the ``-D connect`` properties."""
    fields = dict(connect_props)
    kwargs = {arg: fields.pop(attr) for attr, arg in _CONNECT_ARGS.items() if attr in fields}
    request_response = fields.pop("request_response_information", None)
    if request_response is not None:
        kwargs["request_response_information"] = bool(request_response)
    if fields:  # request problem information, authentication method and data
        kwargs["properties"] = Properties(**fields)
    return kwargs


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Check the connection flags and turn them into ``Settings``.

    Raises:
        UsageError: contradictory or incomplete flags.
        Failure: a TLS file that cannot be loaded.
    """
    url = _url_parts(args.url)
    version: int = args.version
    props: dict[int, dict[str, Any]] = args.properties or {}
    if props and version != 5:
        raise UsageError(
            f"-D needs MQTT 5 (-V mqttv5): MQTT {_VERSION_NAMES[version]} has no properties"
        )
    if args.session_expiry is not None and version != 5:
        raise UsageError("-x needs MQTT 5 (-V mqttv5); with 3.1.1, -c keeps the session")
    client_id = _client_id(args)
    connect_props = dict(props.get(PacketType.CONNECT, {}))
    session_expiry: int | None = connect_props.pop("session_expiry_interval", args.session_expiry)
    if session_expiry is None:
        session_expiry = SESSION_FOREVER if args.persistent and version == 5 else 0
    disconnect_expiry = props.get(PacketType.DISCONNECT, {}).get("session_expiry_interval")
    if disconnect_expiry and not session_expiry:
        # [MQTT-3.14.2-2]: no session expiry on DISCONNECT when CONNECT had none.
        raise UsageError("-D disconnect session-expiry-interval needs -x or -c")
    kwargs: dict[str, Any] = {
        "client_id": client_id,
        "version": version,
        "clean_start": not args.persistent,
        "session_expiry": session_expiry,
        "keepalive": args.keepalive,
        "username": args.username if args.username is not None else url.get("username"),
        "password": args.password if args.password is not None else url.get("password"),
        "will": _will(args, props.get(WILL, {})),
        **_connect_kwargs(connect_props),
    }
    if args.scram:
        if version != 5:
            raise UsageError("--scram needs MQTT 5 (-V mqttv5): it is enhanced authentication")
        if kwargs["username"] is None or kwargs["password"] is None:
            raise UsageError("--scram needs a user name and a password (-u and -P)")
        try:
            kwargs["authenticator"] = ScramSha256Authenticator(
                kwargs["username"], kwargs["password"]
            )
        except ValueError as exc:
            raise UsageError(f"--scram: {exc}") from None
        kwargs["auth_method"] = SCRAM_METHOD
        kwargs["password"] = None  # proved by the exchange, never sent
    tls = _tls_context(args, bool(url.get("tls")))
    kwargs["tls"] = tls
    port = args.port or url.get("port") or (8883 if tls is not None else 1883)
    return Settings(
        host=args.host or url.get("host") or "localhost",
        port=port,
        version=version,
        client_kwargs=kwargs,
        url_topic=url.get("topic"),
        properties=props,
        disconnect_session_expiry=disconnect_expiry,
    )


# -- connecting and disconnecting ----------------------------------------------------------------


def _why(exc: BaseException) -> str:
    """The readable part of an exception: ``Connection refused``, not ``[Errno 111] ...``."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, OSError) and (exc.errno or exc.strerror):
        # asyncio's "Connect call failed ('127.0.0.1', 1)" says less than strerror(errno);
        # getaddrinfo's errors are negative and carry their own text.
        why = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror
        return f"{why}: {exc.filename}" if exc.filename else f"{why}"
    return str(exc) or type(exc).__name__


def describe_code(code: ReasonCode) -> str:
    """``Not authorized (0x87)``."""
    return f"{code.spec_name} (0x{code.value:02X})"


def describe_error(exc: MQTTError) -> str:
    """``Not authorized (0x87)``, with the reason string or message after it when there is one."""
    text = describe_code(exc.reason_code)
    return text if exc.message == exc.reason_code.spec_name else f"{text}: {exc.message}"


async def connect(client: Client, settings: Settings) -> None:
    """Connect ``client``, turning a failure into a readable ``Failure``."""
    log.debug(
        "connecting to %s as %r (MQTT %s)",
        settings.address,
        client.client_id,
        _VERSION_NAMES[settings.version],
    )
    try:
        await client.connect()
    except ConnectError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError):
            why = "timed out" if isinstance(cause, TimeoutError) else _why(cause)
            raise Failure(f"cannot connect to {settings.address}: {why}") from None
        text = f"connection refused by {settings.address}: {describe_error(exc)}"
        if exc.reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION and settings.version == 5:
            text += " (try -V mqttv311)"
        raise Failure(text) from None


async def disconnect(client: Client, settings: Settings) -> None:
    """Send DISCONNECT (with ``-D disconnect session-expiry-interval``) and close."""
    log.debug("disconnecting")
    await client.disconnect(session_expiry=settings.disconnect_session_expiry)


# -- running a command ---------------------------------------------------------------------------

_handler: logging.Handler | None = None


def _setup_logging(prog: str, debug: bool, quiet: bool) -> None:
    global _handler
    logger = logging.getLogger("wrenmq")
    if _handler is not None:  # run twice in one process (tests): one handler only
        logger.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    logger.addHandler(_handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG if debug else logging.CRITICAL + 1 if quiet else logging.WARNING)


async def _guarded(main: Callable[[], Awaitable[int]]) -> int:
    """Run ``main``; SIGTERM cancels it (so it still disconnects) and exits with 143."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await main()
    except asyncio.CancelledError:
        if terminated:
            return EXIT_TERMINATED
        raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)


def run_command(
    prog: str, args: argparse.Namespace, prepare: Callable[[], Callable[[], Awaitable[int]]]
) -> int:
    """Run a command: ``prepare()`` checks the flags and returns the coroutine function to run.

    Every failure becomes one line on stderr and an exit status (see the module docstring).
    """
    _setup_logging(prog, args.debug, args.quiet)
    try:
        main = prepare()
        with asyncio.Runner() as runner:
            return runner.run(_guarded(main))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except UsageError as exc:
        log.error("%s (see %s --help)", exc, prog)
        return EXIT_USAGE
    except BrokenPipeError:
        # Whoever read stdout is gone (`| head`): say nothing, and keep Python's own flush at
        # exit from failing again.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except Failure as exc:
        log.error("%s", exc)
    except DisconnectedError as exc:
        log.error("connection lost: %s", exc.message)
    except (WrenError, OSError) as exc:
        log.error("%s", exc if isinstance(exc, WrenError) else _why(exc))
    return EXIT_ERROR
