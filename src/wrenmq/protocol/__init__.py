"""Sans-IO protocol state machines shared by client, broker and bridge.

Takes bytes and ``now``, returns packets, events and bytes; never imports asyncio, socket, ssl,
selectors or time.
"""
