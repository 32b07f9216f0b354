r"""``wrenmq pub``: publish messages, as ``mosquitto_pub`` does.

    wrenmq pub -t TOPIC -m MESSAGE [-q QOS] [-r] [-D publish NAME VALUE]... [connection flags]
    wrenmq pub -t TOPIC {-f FILE | -n | -s | -l} ...

The payload comes from exactly one of: ``-m`` the text (its bytes as given on the command line),
``-f`` a file's contents, ``-n`` nothing (a zero-length message; with ``-r`` it clears the
retained message), ``-s`` all of stdin as one message, ``-l`` one message per line of stdin. As in
mosquitto_pub, ``-l`` removes only the ``\n`` (an empty line is an empty message, a ``\r``
stays, a last line without a newline is still sent) and publishes each line as soon as it is read,
so ``tail -f log | wrenmq pub -l -t logs`` streams. ``--repeat N`` publishes the ``-m/-f/-n/-s``
message N times, ``--repeat-delay`` seconds apart.

QoS 1 and 2 messages are pipelined: up to ``-M`` (default 100) await their acknowledgement at
once, and the command waits for every acknowledgement before it disconnects, so exit status 0
means the broker took every message. A message the broker refuses (a failure reason code in
PUBACK/PUBREC) or the client cannot send (QoS above the server's maximum, a packet over its
maximum size) prints ``wrenmq pub: message N refused: ...``; the others still go out and the exit
status is 1. The connection flags, ``-D`` and the exit statuses are described in ``common``.

Imports anything below it (the cli layer is the top); imported by ``cli.main`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from wrenmq.cli import common
from wrenmq.cli.common import EXIT_ERROR, EXIT_OK, Failure, Settings, UsageError, log
from wrenmq.client import Client
from wrenmq.codec.properties import Properties
from wrenmq.codec.types import PacketType
from wrenmq.errors import LocalProtocolError, NegativeAckError

__all__ = ["add_parser", "run"]

PROG = "wrenmq pub"
_COMMANDS = ("connect", "publish", "disconnect", "will")
_READ_SIZE = 65536


def add_parser(sub: Any) -> None:
    """Register the ``pub`` subcommand."""
    p = sub.add_parser(
        "pub",
        add_help=False,  # -h is the host, as in mosquitto_pub
        help="publish a message (flags as mosquitto_pub)",
        description="Publish MQTT messages; the flags are mosquitto_pub's.",
        usage="wrenmq pub [-h HOST] [-p PORT] -t TOPIC {-m MSG | -f FILE | -l | -n | -s} [options]",
    )
    m = p.add_argument_group("message")
    m.add_argument("-t", "--topic", help="topic to publish to")
    source = m.add_mutually_exclusive_group()
    source.add_argument("-m", "--message", help="the payload (text)")
    source.add_argument("-f", "--file", help="send the contents of FILE")
    source.add_argument(
        "-l", "--stdin-line", action="store_true", help="send each line of stdin as a message"
    )
    source.add_argument(
        "-n", "--null-message", action="store_true", help="send a zero-length message"
    )
    source.add_argument(
        "-s", "--stdin-file", action="store_true", help="send all of stdin as one message"
    )
    m.add_argument("-q", "--qos", type=common.qos_type, default=0, help="QoS 0, 1 or 2")
    m.add_argument("-r", "--retain", action="store_true", help="retain the message")
    m.add_argument(
        "-M",
        dest="max_inflight",
        type=common.int_range(1, 65535),
        help="QoS 1/2 messages awaiting acknowledgement at once (default 100)",
    )
    m.add_argument("--repeat", type=common.int_range(1, 2**31), metavar="N", help="publish N times")
    m.add_argument(
        "--repeat-delay", type=float, default=0.0, metavar="SECONDS", help="between repeats"
    )
    common.add_connection_arguments(p, commands=_COMMANDS)


def run(args: argparse.Namespace) -> int:
    """Carry out ``wrenmq pub``; returns the exit status."""
    return common.run_command(PROG, args, lambda: _prepare(args))


def _payload(args: argparse.Namespace) -> bytes | None:
    """The one payload of ``-m/-f/-n/-s``; ``None`` for ``-l``."""
    if args.message is not None:
        return os.fsencode(args.message)  # the bytes given, even when they are not UTF-8
    if args.file is not None:
        try:
            return Path(args.file).read_bytes()
        except OSError as exc:
            raise Failure(f"cannot read {args.file}: {exc.strerror or exc}") from None
    if args.null_message:
        return b""
    if args.stdin_file:
        return sys.stdin.buffer.read() if sys.stdin is not None else b""
    if args.stdin_line:
        return None
    raise UsageError("no message: give -m, -f, -l, -n or -s")


def _prepare(args: argparse.Namespace) -> Callable[[], Awaitable[int]]:
    settings = common.settings_from_args(args)
    topic: str | None = args.topic or settings.url_topic
    if topic is None:
        raise UsageError("no topic: give -t TOPIC")
    common.check_topic_name(topic)
    if args.repeat is not None and args.stdin_line:
        raise UsageError("--repeat works with -m, -f, -n and -s, not with -l")
    if args.repeat_delay < 0:
        raise UsageError("--repeat-delay cannot be negative")
    fields = dict(settings.packet_properties(PacketType.PUBLISH))
    if fields.pop("topic_alias", None) is not None:
        log.debug("topic aliases: the client assigns them itself within the server's maximum")
    properties = Properties(**fields)
    payload = _payload(args)

    async def main() -> int:
        extra = {"max_inflight": args.max_inflight} if args.max_inflight else {}
        client = settings.client(**extra)
        publisher = _Publisher(
            client, topic, args.qos, args.retain, properties, args.max_inflight or 100
        )
        return await _publish(client, settings, publisher, payload, args)

    return main


async def _publish(
    client: Client,
    settings: Settings,
    publisher: _Publisher,
    payload: bytes | None,
    args: argparse.Namespace,
) -> int:
    await common.connect(client, settings)
    try:
        if payload is None:
            async for line in _stdin_lines():
                await publisher.send(line)
        else:
            for i in range(args.repeat or 1):
                if i and args.repeat_delay:
                    await asyncio.sleep(args.repeat_delay)
                await publisher.send(payload)
        await publisher.finish()
    finally:
        await publisher.cancel()
        await common.disconnect(client, settings)
    return EXIT_ERROR if publisher.failed else EXIT_OK


class _Publisher:
    """Publishes one message after the other, with up to ``window`` QoS 1/2 ones unacknowledged.

    A QoS 1/2 publish runs as a task that lives until its acknowledgement; tasks start in the
    order they were made and ``Client.publish`` writes the PUBLISH before its first await, so the
    messages go out in order.
    """

    def __init__(
        self,
        client: Client,
        topic: str,
        qos: int,
        retain: bool,
        properties: Properties,
        window: int,
    ) -> None:
        self.client = client
        self.topic = topic
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.window = window
        self.pending: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0

    async def send(self, payload: bytes) -> None:
        """Publish ``payload``; returns once it is written (QoS 0) or in flight (QoS 1/2)."""
        if not self.qos:
            await self._publish(payload)
            return
        while len(self.pending) >= self.window:
            await self._wait()
        self.pending.add(asyncio.get_running_loop().create_task(self._publish(payload)))

    async def _publish(self, payload: bytes) -> None:
        self.sent += 1
        number = self.sent
        log.debug(
            "PUBLISH %d to %r (q%d, r%d, %d bytes)",
            number,
            self.topic,
            self.qos,
            self.retain,
            len(payload),
        )
        try:
            code = await self.client.publish(
                self.topic, payload, self.qos, self.retain, properties=self.properties
            )
        except (NegativeAckError, LocalProtocolError) as exc:
            self.failed += 1
            log.error("message %d refused: %s", number, common.describe_error(exc))
            return
        if code is not None:  # QoS 1/2
            log.debug("message %d acknowledged: %s", number, common.describe_code(code))

    async def _wait(self) -> None:
        done, _ = await asyncio.wait(self.pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            self.pending.discard(task)
            task.result()  # a lost connection ends the command

    async def finish(self) -> None:
        """Wait until every message was acknowledged."""
        while self.pending:
            await self._wait()

    async def cancel(self) -> None:
        """Stop waiting for acknowledgements (the command is ending early)."""
        for task in self.pending:
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)
        self.pending.clear()


async def _stdin_lines() -> AsyncIterator[bytes]:
    r"""The lines of stdin without their ``\n``, each as soon as it arrives.

    A thread reads the file descriptor (a pipe, a terminal or a regular file alike; the event loop
    cannot poll a regular file) with ``os.read``, which holds no lock of ``sys.stdin`` that could
    block the interpreter's exit; a bounded queue is the back-pressure.
    """
    if sys.stdin is None:
        return
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
    fd = sys.stdin.fileno()

    def reader() -> None:
        while True:
            try:
                chunk = os.read(fd, _READ_SIZE)
            except OSError:
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):
                return  # the event loop is gone: the command ended
            if not chunk:
                return

    threading.Thread(target=reader, name="wrenmq-pub-stdin", daemon=True).start()
    pending = b""
    while chunk := await chunks.get():
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line
    if pending:
        yield pending
