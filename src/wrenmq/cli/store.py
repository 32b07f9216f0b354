"""``wrenmq store``: look into and compact the broker's SQLite store.

``wrenmq store inspect --data-dir DIR [--json]`` prints counts, the deepest queues and sizes;
``wrenmq store compact --data-dir DIR`` checkpoints the WAL and VACUUMs (stop the broker first).
Both open the store as the broker does, so they migrate an older schema and drop expired data.
Errors print as ``wrenmq store: ...`` with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from wrenmq.broker.persistence import DB_FILENAME, SQLiteStore, StoreError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the ``store`` subcommand and its actions."""
    p = sub.add_parser("store", help="inspect or compact the persistent store")
    actions = p.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    inspect = actions.add_parser("inspect", help="print what the store holds")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    compact = actions.add_parser("compact", help="checkpoint the WAL and VACUUM the database")
    for action in (inspect, compact):
        action.add_argument(
            "--data-dir", required=True, metavar="DIR", help="the broker's persistence_location"
        )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def format_inspect(info: dict[str, Any]) -> str:
    """The readable form of ``SQLiteStore.inspect()``."""
    lines = [
        f"database       {info['file']} (schema version {info['schema_version']})",
        f"file size      {_size(info['file_size'])} (WAL {_size(info['wal_size'])})",
        f"sessions       {info['sessions']}",
        f"subscriptions  {info['subscriptions']}",
        f"queued         {info['deliveries']} deliveries of {info['messages']} messages",
        f"retained       {info['retained']}",
    ]
    depths: dict[str, int] = info["queue_depths"]
    if depths:
        lines.append(f"deepest queues (top {len(depths)}):")
        width = max(len(client_id) for client_id in depths)
        lines.extend(f"  {client_id:<{width}}  {n}" for client_id, n in depths.items())
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> str:
    store = SQLiteStore(args.data_dir, durability="none", snapshot_limit=0)
    await store.open()
    try:
        if args.store_action == "compact":
            sizes = await store.compact()
            before = sizes["file_size_before"] + sizes["wal_size_before"]
            after = sizes["file_size"] + sizes["wal_size"]
            return f"compacted {store.path}: {_size(before)} -> {_size(after)}"
        info = await store.inspect()
        info.pop("pending_changes", None)
        return json.dumps(info, indent=2) if args.json else format_inspect(info)
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    """Run ``wrenmq store ACTION``; returns the exit status."""
    path = Path(args.data_dir) / DB_FILENAME
    if not path.is_file():
        print(f"wrenmq store: no database at {path} (check --data-dir)", file=sys.stderr)
        return 1
    try:
        print(asyncio.run(_run(args)))
    except StoreError as exc:
        print(f"wrenmq store: {exc}", file=sys.stderr)
        return 1
    return 0
