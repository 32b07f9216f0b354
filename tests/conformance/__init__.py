"""Black-box conformance tests: raw sockets, hand-built bytes, cases named by spec id.

A package so that its module names (``conformance.test_publish``...) never collide with test files
of the same name in other test directories.
"""
