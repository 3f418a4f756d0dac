"""Shared fixtures. Everything runs against real servers on 127.0.0.1; nothing of ours is mocked.

The fixtures live in tests/harness/ and are registered here, once, for every test module:
`devwebui`, `make_devwebui`, `webui_client` (tests/harness/webui.py) and `db`, `db_url`,
`sqlite_url`, `pg_url`, `pg_server`, `pg_control` (tests/harness/storage.py).
"""

from __future__ import annotations

from tests.harness.storage import (  # noqa: F401  (fixtures)
    fixture_db,
    fixture_db_url,
    fixture_pg_control,
    fixture_pg_server,
    fixture_pg_url,
    fixture_sqlite_url,
)
from tests.harness.webui import (  # noqa: F401  (fixtures)
    devwebui_fixture,
    make_devwebui_fixture,
    webui_client_fixture,
)
