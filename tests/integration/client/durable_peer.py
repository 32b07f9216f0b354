"""A client process with a durable session, for the crash tests in ``test_client_durable.py``.

Run as ``python durable_peer.py MODE ...``; the tests SIGKILL it (or it kills itself) mid-stream
and start a new one on the same store.

* ``publish``: publish ``--count`` messages (payload: the decimal index from ``--start``) with
  ``--window`` publishes in flight, appending each index whose ``publish()`` returned to
  ``--log``; then wait until the store has nothing left to send. ``--count 0`` just resumes.
* ``subscribe``: subscribe to ``--topic`` (QoS 2), append each message's payload to ``--log``
  from an ``on_message`` handler, and SIGKILL itself right after the ``--die-after``-th message
  of this run (the message is recorded, its PUBREC not sent: the worst moment for a restart);
  exit once ``--log`` holds ``--expect`` lines.

Prints ``ready`` once connected.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from wrenmq.client import Client, Message
from wrenmq.client.store import SQLiteStore


def make_client(args: argparse.Namespace, **kwargs: object) -> Client:
    return Client(
        "127.0.0.1",
        args.port,
        client_id=args.client_id,
        version=args.version,
        clean_start=False,
        session_expiry=3600,
        session_store=SQLiteStore(args.store, synchronous="normal"),
        # The broker's limit on unacknowledged QoS 2 (its Receive Maximum, which a 3.1.1
        # client is not told and must not exceed either).
        max_inflight=20,
        **kwargs,  # type: ignore[arg-type]
    )


async def publish(args: argparse.Namespace) -> None:
    log = Path(args.log).open("a", encoding="ascii")  # noqa: SIM115
    async with make_client(args) as client:
        print("ready", flush=True)
        window = asyncio.Semaphore(args.window)

        async def one(i: int) -> None:
            async with window:
                await client.publish(args.topic, str(i), qos=args.qos)
                log.write(f"{i}\n")
                log.flush()

        await asyncio.gather(*(one(i) for i in range(args.start, args.start + args.count)))
        await client.wait_published(timeout=30)
    log.close()


async def subscribe(args: argparse.Namespace) -> None:
    log_path = Path(args.log)
    seen = len(log_path.read_text().splitlines()) if log_path.exists() else 0
    log = log_path.open("a", encoding="ascii")
    done = asyncio.Event()
    this_run = 0

    def on_message(message: Message) -> None:
        nonlocal seen, this_run
        log.write(message.payload.decode() + "\n")
        log.flush()
        seen += 1
        this_run += 1
        if this_run == args.die_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if seen >= args.expect:
            done.set()

    client = make_client(args)
    client.on_message(on_message)
    async with client:
        await client.subscribe(args.topic, qos=2)
        print("ready", flush=True)
        if seen < args.expect:
            await asyncio.wait_for(done.wait(), 60)
    log.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["publish", "subscribe"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--version", type=int, default=5)
    parser.add_argument("--qos", type=int, default=1)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--die-after", type=int, default=0)
    parser.add_argument("--expect", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(publish(args) if args.mode == "publish" else subscribe(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
