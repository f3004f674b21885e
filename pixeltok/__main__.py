"""``python -m pixeltok``: the same command line as ``pixeltok``."""

from .cli import main

raise SystemExit(main())
