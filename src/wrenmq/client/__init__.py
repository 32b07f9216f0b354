"""client layer of wrenmq."""
