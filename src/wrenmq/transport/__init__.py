"""transport layer of wrenmq."""
