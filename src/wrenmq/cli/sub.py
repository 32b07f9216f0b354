r"""``wrenmq sub``: subscribe and print messages, as ``mosquitto_sub`` does.

    wrenmq sub -t FILTER [-t FILTER]... [-q QOS] [-v | -F FORMAT | --json] [-C N] [-W SECONDS]

What it prints per message: the payload (default), ``topic payload`` (``-v``; an empty payload
shows as ``(null)``), a ``-F`` format, or one JSON object (``--json``), each followed by a newline
unless ``-N``. Output is flushed after every message, so pipes see messages as they come.

Which messages: ``-T FILTER`` drops those matching a filter (wildcards allowed); ``-R`` drops
retained ones (sent because a subscription is new); ``--retained-only`` prints retained ones and
exits at the first message that is not; ``--remove-retained`` clears every retained message it
receives (publishes an empty retained one). ``-C N`` exits after N printed messages, ``-W S``
exits after S seconds with status 27 and ``timed out`` (as mosquitto_sub), ``-E`` exits once the
subscriptions are acknowledged, ``-U FILTER`` unsubscribes first (for a ``-c`` session). Every
``-t`` goes in one SUBSCRIBE; refused filters are reported, and if all are refused the exit
status is 1. After a lost connection the client reconnects (and resubscribes unless the broker
kept the session), as mosquitto_sub does.

``-F`` is mosquitto_sub's format language: ``%t`` topic, ``%p`` payload, ``%q`` QoS, ``%r``
retain (0/1), ``%m`` packet id, ``%l`` payload length, ``%x``/``%X`` payload in hex, ``%I``
ISO 8601 local time, ``%U`` Unix time with nanoseconds, ``%%``; the MQTT 5 properties ``%A``
topic alias, ``%C`` content type, ``%D`` correlation data, ``%E`` message expiry, ``%F`` payload
format indicator, ``%P`` user properties (``k:v k2:v2``), ``%R`` response topic, ``%S``
subscription identifiers; ``@X`` is ``strftime("%X")`` of the receive time and ``@@`` a ``@``;
escapes ``\\ \0 \a \e \n \r \t \v``; ``%-08.3t`` style alignment, zero padding, width and
precision on every field (precision truncates; Mosquitto applies them to some fields only). An
unknown specifier or escape is a usage error; ``%j``/``%J`` (Mosquitto's JSON) are not provided:
use ``--json``.

``--json`` prints one object per line: ``topic``, ``payload`` with ``payload_encoding``
(``"utf-8"``, or ``"base64"`` when the payload is not UTF-8 or with ``--base64``), ``qos``,
``retain``, ``time`` (UTC, ISO 8601) and ``properties`` (the MQTT 5 properties present, named as
``wrenmq.codec.properties.Properties`` names them; ``user_properties`` a list of ``[key, value]``
pairs in order, duplicates kept; ``correlation_data`` with ``correlation_data_encoding`` as for
the payload; ``{}`` for MQTT 3.1.1).

Imports anything below it (the cli layer is the top); imported by ``cli.main`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from wrenmq.cli import common
from wrenmq.cli.common import EXIT_OK, EXIT_TIMEOUT, Failure, Settings, UsageError, log
from wrenmq.client import Client, DisconnectedError, Message, Reconnect, Subscription
from wrenmq.codec.properties import Properties
from wrenmq.codec.topics import topic_matches
from wrenmq.codec.types import PacketType

__all__ = ["add_parser", "compile_format", "json_line", "run"]

PROG = "wrenmq sub"
_COMMANDS = ("connect", "subscribe", "unsubscribe", "disconnect", "will")
# After a lost connection: retry soon, then every 10 s at most, forever (as mosquitto_sub).
_RECONNECT: Final = Reconnect(initial_delay=0.5, max_delay=10.0)

Render = Callable[[Message, int], bytes]  # (message, receive time in ns) -> output bytes


def add_parser(sub: Any) -> None:
    """Register the ``sub`` subcommand."""
    p = sub.add_parser(
        "sub",
        add_help=False,  # -h is the host, as in mosquitto_sub
        help="subscribe and print messages (flags as mosquitto_sub)",
        description="Subscribe to MQTT topics and print the messages; flags as mosquitto_sub's.",
        usage="wrenmq sub [-h HOST] [-p PORT] -t FILTER [-t FILTER]... [options]",
    )
    s = p.add_argument_group("subscription")
    s.add_argument(
        "-t",
        "--topic",
        dest="topics",
        action="append",
        default=[],
        metavar="FILTER",
        help="topic filter to subscribe to (repeatable)",
    )
    s.add_argument("-q", "--qos", type=common.qos_type, default=0, help="QoS 0, 1 or 2")
    s.add_argument(
        "-T",
        "--filter-out",
        action="append",
        default=[],
        metavar="FILTER",
        help="do not print topics matching FILTER (repeatable)",
    )
    s.add_argument(
        "-U",
        "--unsubscribe",
        action="append",
        default=[],
        metavar="FILTER",
        help="unsubscribe from FILTER first (repeatable)",
    )
    s.add_argument(
        "-C", "--count", type=common.int_range(1, 2**31), metavar="N", help="exit after N messages"
    )
    s.add_argument(
        "-W", "--timeout", type=float, metavar="SECONDS", help="exit after SECONDS (status 27)"
    )
    s.add_argument("-E", "--exit-after-subscribe", action="store_true", help="exit after SUBACK")
    s.add_argument(
        "-R", "--no-retained", action="store_true", help="do not print retained (stale) messages"
    )
    s.add_argument(
        "--retained-only",
        action="store_true",
        help="print retained messages only; exit at the first that is not",
    )
    s.add_argument(
        "--remove-retained", action="store_true", help="clear the retained messages received"
    )
    o = p.add_argument_group("output")
    o.add_argument("-v", "--verbose", action="store_true", help="print 'topic payload'")
    fmt = o.add_mutually_exclusive_group()
    fmt.add_argument(
        "-F",
        "--format",
        help="mosquitto_sub format: %%t topic, %%p payload, %%q QoS, %%r retain, %%l length, "
        "%%x hex, %%I time, %%P user properties, @H strftime, \\n ...",
    )
    fmt.add_argument("--json", action="store_true", help="one JSON object per message")
    o.add_argument("--base64", action="store_true", help="--json: payloads always in base64")
    o.add_argument("-N", "--no-eol", action="store_true", help="no newline after a message")
    common.add_connection_arguments(p, commands=_COMMANDS)


def run(args: argparse.Namespace) -> int:
    """Carry out ``wrenmq sub``; returns the exit status."""
    return common.run_command(PROG, args, lambda: _prepare(args))


# -- output --------------------------------------------------------------------------------------


def _hex(data: bytes, upper: bool) -> bytes:
    text = data.hex().encode()
    return text.upper() if upper else text


def _local_time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9).astimezone()


def _number(value: int | None) -> bytes:
    return b"" if value is None else str(value).encode()


def _text(value: str | None) -> bytes:
    return b"" if value is None else value.encode()


_FIELDS: Final[dict[str, Render]] = {
    "t": lambda m, ns: m.topic.encode(),
    "p": lambda m, ns: m.payload,
    "q": lambda m, ns: b"%d" % m.qos,
    "r": lambda m, ns: b"1" if m.retain else b"0",
    "m": lambda m, ns: b"%d" % m.packet_id,
    "l": lambda m, ns: b"%d" % len(m.payload),
    "x": lambda m, ns: _hex(m.payload, False),
    "X": lambda m, ns: _hex(m.payload, True),
    "I": lambda m, ns: _local_time(ns).strftime("%Y-%m-%dT%H:%M:%S%z").encode(),
    "U": lambda m, ns: b"%d.%09d" % divmod(ns, 1_000_000_000),
    "A": lambda m, ns: _number(m.properties.topic_alias),
    "C": lambda m, ns: _text(m.properties.content_type),
    "D": lambda m, ns: m.properties.correlation_data or b"",
    "E": lambda m, ns: _number(m.properties.message_expiry_interval),
    "F": lambda m, ns: _number(m.properties.payload_format_indicator),
    "P": lambda m, ns: " ".join(f"{k}:{v}" for k, v in m.properties.user_properties).encode(),
    "R": lambda m, ns: _text(m.properties.response_topic),
    "S": lambda m, ns: ",".join(map(str, m.properties.subscription_identifiers)).encode(),
}
_ESCAPES: Final = {
    "\\": b"\\",
    "0": b"\0",
    "a": b"\a",
    "e": b"\x1b",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
}


def _field(get: Render, left: bool, pad: bytes, width: int, precision: int | None) -> Render:
    if not width and precision is None:
        return get

    def render(m: Message, ns: int) -> bytes:
        value = get(m, ns)
        if precision is not None:
            value = value[:precision]
        if len(value) < width:
            fill = (pad if not left else b" ") * (width - len(value))
            value = value + fill if left else fill + value
        return value

    return render


def _strftime(directive: str) -> Render:
    return lambda m, ns: _local_time(ns).strftime(directive).encode()


def _literal(data: bytes) -> Render:
    return lambda m, ns: data


def compile_format(fmt: str) -> Render:
    """Compile a mosquitto_sub ``-F`` format into a function of (message, receive time in ns).

    Raises:
        ValueError: an unknown or incomplete specifier or escape.
    """
    parts: list[Render] = []
    literal = bytearray()
    i, n = 0, len(fmt)

    def flush() -> None:
        if literal:
            parts.append(_literal(bytes(literal)))
            literal.clear()

    while i < n:
        ch = fmt[i]
        i += 1
        if ch not in "%@\\":
            literal += ch.encode("utf-8", "surrogateescape")  # bytes given on the command line
            continue
        left = zero = False
        width, precision = 0, None
        if ch == "%":
            left = fmt.startswith("-", i)
            i += left
            zero = fmt.startswith("0", i)
            i += zero
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            width = int(fmt[start:i] or 0)
            if fmt.startswith(".", i):
                start = i = i + 1
                while i < n and fmt[i].isdigit():
                    i += 1
                precision = int(fmt[start:i] or 0)
        if i >= n:
            raise ValueError(f"incomplete {ch} at the end of the format")
        spec = fmt[i]
        i += 1
        if ch == "\\":
            if spec not in _ESCAPES:
                raise ValueError(f"unknown escape \\{spec}")
            literal += _ESCAPES[spec]
        elif ch == "@":
            if spec == "@":
                literal += b"@"
            elif spec.isalpha():
                flush()
                parts.append(_strftime("%" + spec))
            else:
                raise ValueError(f"unknown time field @{spec}")
        elif spec == "%":
            literal += b"%"
        elif spec in _FIELDS:
            flush()
            parts.append(_field(_FIELDS[spec], left, b"0" if zero else b" ", width, precision))
        else:
            hint = " (use --json)" if spec in "jJ" else ""
            raise ValueError(f"unknown format specifier %{spec}{hint}")
    flush()
    if len(parts) == 1:
        return parts[0]
    return lambda m, ns: b"".join([part(m, ns) for part in parts])


def _binary(name: str, data: bytes, force_base64: bool) -> dict[str, str]:
    if not force_base64:
        try:
            return {name: data.decode("utf-8"), f"{name}_encoding": "utf-8"}
        except UnicodeDecodeError:
            pass
    return {name: base64.b64encode(data).decode("ascii"), f"{name}_encoding": "base64"}


def _properties_json(props: Properties, force_base64: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(props):
        value = getattr(props, f.name)
        if value is None or value == ():
            continue
        if isinstance(value, bytes):
            out.update(_binary(f.name, value, force_base64))
        elif isinstance(value, tuple):
            out[f.name] = [list(v) if isinstance(v, tuple) else v for v in value]
        else:
            out[f.name] = value
    return out


def json_line(m: Message, ns: int, *, force_base64: bool = False) -> bytes:
    """One message as a line of JSON (see the module docstring for the fields)."""
    received = datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds")
    obj: dict[str, Any] = {"topic": m.topic}
    obj.update(_binary("payload", m.payload, force_base64))
    obj.update(
        qos=m.qos,
        retain=m.retain,
        time=received.replace("+00:00", "Z"),
        properties=_properties_json(m.properties, force_base64),
    )
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _renderer(args: argparse.Namespace) -> Render:
    eol = b"" if args.no_eol else b"\n"
    if args.json:
        force = bool(args.base64)
        return lambda m, ns: json_line(m, ns, force_base64=force)
    if args.base64:
        raise UsageError("--base64 goes with --json")
    if args.format is not None:
        try:
            render = compile_format(args.format)
        except ValueError as exc:
            raise UsageError(f"-F: {exc}") from None
        return lambda m, ns: render(m, ns) + eol
    if args.verbose:
        return lambda m, ns: b"%s %s%s" % (m.topic.encode(), m.payload or b"(null)", eol)
    return lambda m, ns: m.payload + eol


# -- subscribing ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Options:
    topics: tuple[str, ...]
    qos: int
    filter_out: tuple[str, ...]
    unsubscribe: tuple[str, ...]
    count: int | None
    timeout: float | None
    exit_after_subscribe: bool
    no_retained: bool
    retained_only: bool
    remove_retained: bool
    render: Render


def _prepare(args: argparse.Namespace) -> Callable[[], Awaitable[int]]:
    settings = common.settings_from_args(args)
    topics: list[str] = list(args.topics)
    if settings.url_topic is not None:
        topics.append(settings.url_topic)
    if not topics and not args.unsubscribe:
        raise UsageError("no topic: give -t FILTER (or -U FILTER)")
    for topic_filter in (*topics, *args.unsubscribe):
        common.check_topic_filter(topic_filter)
    for topic_filter in args.filter_out:
        common.check_topic_filter(topic_filter, "-T filter")
    if args.no_retained and args.retained_only:
        raise UsageError("-R and --retained-only contradict each other")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("-W needs a positive number of seconds")
    options = _Options(
        topics=tuple(topics),
        qos=args.qos,
        filter_out=tuple(args.filter_out),
        unsubscribe=tuple(args.unsubscribe),
        count=args.count,
        timeout=args.timeout,
        exit_after_subscribe=args.exit_after_subscribe,
        no_retained=args.no_retained,
        retained_only=args.retained_only,
        remove_retained=args.remove_retained,
        render=_renderer(args),
    )
    return lambda: _subscribe(settings, options)


async def _subscribe(settings: Settings, options: _Options) -> int:
    client = settings.client(reconnect=_RECONNECT)
    closing = False
    connects = 0

    def on_connected(_: object) -> None:
        nonlocal connects
        connects += 1
        if connects > 1:
            log.warning("reconnected to %s", settings.address)

    def on_disconnected(error: DisconnectedError) -> None:
        if not closing:
            log.warning("disconnected (%s); reconnecting", error.message)

    client.on_connected(on_connected)
    client.on_disconnected(on_disconnected)
    deadline = asyncio.timeout(options.timeout)
    try:
        async with deadline:
            await common.connect(client, settings)
            try:
                return await _receive(client, settings, options)
            finally:
                closing = True
                await common.disconnect(client, settings)
    except TimeoutError:
        if not deadline.expired():
            raise
        log.error("timed out")
        return EXIT_TIMEOUT


async def _subscribe_all(client: Client, settings: Settings, options: _Options) -> None:
    if options.unsubscribe:
        props = settings.packet_properties(PacketType.UNSUBSCRIBE)
        codes = await client.unsubscribe(
            list(options.unsubscribe), user_properties=props.get("user_properties", ())
        )
        for topic_filter, code in zip(options.unsubscribe, codes, strict=False):
            level = log.warning if code.is_failure else log.debug
            level("unsubscribe from %r: %s", topic_filter, common.describe_code(code))
    if not options.topics:
        return
    props = settings.packet_properties(PacketType.SUBSCRIBE)
    sub_ids = props.get("subscription_identifiers", ())
    codes = await client.subscribe(
        tuple(Subscription(t, options.qos) for t in options.topics),
        subscription_identifier=sub_ids[-1] if sub_ids else None,
        user_properties=props.get("user_properties", ()),
    )
    for topic_filter, code in zip(options.topics, codes, strict=False):
        if code.is_failure:
            log.warning("subscription to %r refused: %s", topic_filter, common.describe_code(code))
        else:
            log.debug("subscribed to %r: %s", topic_filter, common.describe_code(code))
    if all(code.is_failure for code in codes):
        raise Failure("every subscription was refused")


async def _receive(client: Client, settings: Settings, options: _Options) -> int:
    await _subscribe_all(client, settings, options)
    if options.exit_after_subscribe or not options.topics:
        return EXIT_OK
    out = sys.stdout.buffer
    render = options.render
    printed = 0
    async for m in client.messages:
        log.debug(
            "received %r (q%d, r%d, m%d, %d bytes)",
            m.topic,
            m.qos,
            m.retain,
            m.packet_id,
            len(m.payload),
        )
        if any(topic_matches(f, m.topic) for f in options.filter_out):
            continue
        if options.retained_only and not m.retain:
            break
        if options.remove_retained and m.retain:
            await client.publish(m.topic, b"", qos=1, retain=True)
        if options.no_retained and m.retain:
            continue
        out.write(render(m, time.time_ns()))
        out.flush()
        printed += 1
        if options.count is not None and printed >= options.count:
            break
    return EXIT_OK
