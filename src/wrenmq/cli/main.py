"""The ``wrenmq`` command: dispatches to its subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wrenmq import __version__
from wrenmq.cli import broker, passwd, pub, store
from wrenmq.cli import sub as sub_cli


def build_parser() -> argparse.ArgumentParser:
    """The top-level argument parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="wrenmq", description="MQTT broker and tools")
    parser.add_argument("--version", action="version", version=f"wrenmq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("version", help="print the version and exit")
    broker.add_parser(sub)
    store.add_parser(sub)
    passwd.add_parser(sub)
    pub.add_parser(sub)
    sub_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``wrenmq`` command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "version"):
        print(f"wrenmq {__version__}")
        return 0
    if args.command == "broker":
        return broker.run(args)
    if args.command == "store":
        return store.run(args)
    if args.command == "passwd":
        return passwd.run(args)
    if args.command == "pub":
        return pub.run(args)
    if args.command == "sub":
        return sub_cli.run(args)
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse exits first
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
