"""``python -m wrenmq``: the same as the ``wrenmq`` command."""

from wrenmq.cli.main import main

raise SystemExit(main())
