"""``python -m cmet.train …`` (and ``torchrun -m cmet.train …``): the ``train``/``presets`` commands."""

from cmet.train.cli import main

raise SystemExit(main())
