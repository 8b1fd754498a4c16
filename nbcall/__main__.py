"""``python -m nbcall``: the ``nbcall`` command."""

from .cli import main

raise SystemExit(main())
