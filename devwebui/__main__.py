"""`python -m devwebui`: the stand-in WebUI on its own."""

from devwebui.server import main

raise SystemExit(main())
