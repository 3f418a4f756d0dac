"""`python -m bot` is the `drawbridge` command."""

from bot.cli import main

raise SystemExit(main())
