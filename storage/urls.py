"""DATABASE_URL as operators write it: normalised to the async drivers, shown without a password.

Hosting platforms inject `postgres://…` (Heroku, Render, Railway, Fly) and libpq users write
`postgresql://…`; SQLAlchemy reads both as the synchronous psycopg2 driver, which drawbridge
neither ships nor can use. Both become `postgresql+asyncpg://`, and `sqlite:///…` becomes
`sqlite+aiosqlite:///…`. A URL that names a driver explicitly keeps it (a missing one is then
reported as such when connecting).
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

SQLITE = "sqlite+aiosqlite"
POSTGRES = "postgresql+asyncpg"

# scheme as written → the async driver drawbridge runs on
_SCHEMES = {"postgres": POSTGRES, "postgresql": POSTGRES, "sqlite": SQLITE}
_BACKENDS = ("sqlite", "postgresql")
EXAMPLES = "sqlite:///data/drawbridge.db or postgresql://user:password@host:5432/dbname"

# libpq's sslmode (what platforms append) is called ssl by asyncpg; the values are the same
_SSLMODE = re.compile(r"([?&])sslmode=")


class DatabaseURLError(ValueError):
    """DATABASE_URL cannot be used; the message says how to write it (and never the password)."""


def normalise(url: str) -> str:
    """`url` with the async driver drawbridge needs; raises DatabaseURLError when unusable."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise DatabaseURLError(f"DATABASE_URL is not a database URL; write {EXAMPLES}")
    driver = _SCHEMES.get(scheme.lower(), scheme.lower())
    backend = driver.partition("+")[0]
    if backend not in _BACKENDS:
        raise DatabaseURLError(
            f"DATABASE_URL names {backend}, but drawbridge keeps its data in SQLite or "
            f"PostgreSQL; write {EXAMPLES}"
        )
    result = f"{driver}://{rest}"
    if driver == POSTGRES and not re.search(r"[?&]ssl=", result):
        result = _SSLMODE.sub(r"\1ssl=", result)
    try:
        make_url(result)
    except (ArgumentError, ValueError):
        raise DatabaseURLError(f"DATABASE_URL cannot be read as a URL; write {EXAMPLES}") from None
    return result


def parse(url: str) -> URL:
    """The normalised URL, parsed."""
    return make_url(normalise(url))


def sqlite_file(url: str) -> str | None:
    """The database file of an SQLite URL (as written, maybe relative), else None."""
    parsed = parse(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return name


def describe(url: str) -> str:
    """Where the database is, for messages: a file path or host:port/name, never a password."""
    parsed = parse(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_file(url) or "an in-memory SQLite database"
    host = parsed.host or "the local socket"
    if parsed.query.get("host"):
        host = str(parsed.query["host"])
    port = f":{parsed.port}" if parsed.port else ""
    name = f"/{parsed.database}" if parsed.database else ""
    return f"{host}{port}{name}"


def for_libpq(url: str) -> str:
    """The URL as libpq tools (pg_dump, psql) take it, with its password left out."""
    parsed = parse(url)
    query = dict(parsed.query)
    if "ssl" in query:
        query["sslmode"] = query.pop("ssl")
    bare = URL.create(
        parsed.get_backend_name(),
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=query,
    )
    return bare.render_as_string(hide_password=False)
