"""broker layer of wrenmq."""
