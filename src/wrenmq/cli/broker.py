"""``wrenmq broker``: run the broker standalone, configured like Mosquitto."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tomllib
from typing import Any

from wrenmq.broker.broker import Broker
from wrenmq.broker.config import BrokerConfig, ListenerConfig, load_toml
from wrenmq.broker.persistence.base import StoreError
from wrenmq.errors import ConfigError, WrenError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the ``broker`` subcommand."""
    p = sub.add_parser("broker", help="run the MQTT broker")
    p.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file (wrenmq.toml)")
    p.add_argument("-p", "--port", type=int, help="listen on this port (replaces the listeners)")
    p.add_argument("--bind", metavar="ADDR", help="bind address for --port (default 127.0.0.1)")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    p.add_argument("--no-uvloop", action="store_true", help="use the standard asyncio event loop")
    p.add_argument(
        "--data-dir", metavar="DIR", help="keep sessions and retained messages in DIR (./data)"
    )
    p.add_argument("--no-persistence", action="store_true", help="keep everything in memory only")


def _sets(path: str | None, key: str) -> bool:
    """Whether the TOML file at ``path`` sets ``key`` at top level."""
    if not path:
        return False
    with open(path, "rb") as f:
        return key in tomllib.load(f)


def build_config(args: argparse.Namespace) -> BrokerConfig:
    """The configuration the command line asks for."""
    config = load_toml(args.config) if args.config else BrokerConfig()
    # The standalone broker persists to ./data unless told otherwise (the embedded one does not).
    persistence = config.persistence if _sets(args.config, "persistence") else True
    if args.no_persistence:
        persistence = False
    changes: dict[str, object] = {"persistence": persistence}
    if args.data_dir:
        changes["persistence_location"] = args.data_dir
    config = config.replace(**changes)
    if args.port is not None or args.bind is not None:
        port = args.port if args.port is not None else 1883
        if not 0 <= port <= 65535:
            raise ConfigError("--port", f"{port} is not a port number (0-65535)")
        bind = args.bind or "127.0.0.1"
        config = config.replace(listeners=(ListenerConfig(port=port, bind_address=bind),))
    return config


def _reload(broker: Broker) -> None:
    log = logging.getLogger("wrenmq.broker")
    try:
        broker.reload_auth()
    except ConfigError as exc:
        log.error("SIGHUP: keeping the previous password/ACL files: %s", exc)
    else:
        log.info("SIGHUP: password and ACL files reloaded")
    try:
        broker.reload_tls()
    except ConfigError as exc:
        log.error("SIGHUP: keeping the previous TLS certificates: %s", exc)
    else:
        if broker.tls_contexts:
            log.info("SIGHUP: TLS certificates reloaded")


async def _serve(config: BrokerConfig) -> None:
    broker = Broker(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, broker)
    await broker.start()
    if (
        not any(
            listener.bind_address not in ("127.0.0.1", "::1", "localhost")
            for listener in config.listeners
        )
        and config.allow_anonymous
    ):
        logging.getLogger("wrenmq.broker").info(
            "local mode: anonymous clients allowed on loopback only"
        )
    try:
        await stop.wait()
    finally:
        logging.getLogger("wrenmq.broker").info("shutting down")
        await broker.stop()


def run(args: argparse.Namespace) -> int:
    """Run the broker until SIGINT/SIGTERM; returns the exit status."""
    try:
        config = build_config(args)
    except (ConfigError, OSError) as exc:
        print(f"wrenmq broker: {exc}", file=sys.stderr)
        return 2
    level = logging.DEBUG if args.verbose else getattr(logging, config.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop_factory = None
    if config.use_uvloop and not args.no_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve(config))
    except OSError as exc:
        print(f"wrenmq broker: cannot listen: {exc}", file=sys.stderr)
        return 1
    except (WrenError, StoreError) as exc:
        print(f"wrenmq broker: {exc}", file=sys.stderr)
        return 1
    return 0
