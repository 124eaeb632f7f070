"""``python -m cmet …`` entry point."""

from cmet.cli import main

raise SystemExit(main())
