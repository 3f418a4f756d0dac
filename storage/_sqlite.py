"""SQLite write transactions in one worker-thread hop each, on a sync SQLAlchemy connection.

Through aiosqlite every statement, fetch, BEGIN and COMMIT is a separate hop to aiosqlite's
thread (~120 µs each, ~19 for a reservation). Here a whole transaction, the same sync function
over a SQLAlchemy `Connection` that PostgreSQL runs through `AsyncConnection.run_sync`, runs in
this Database's own writer thread on a pysqlite connection: BEGIN IMMEDIATE, the statements,
COMMIT (ROLLBACK on any exception). One implementation of each write serves both databases;
only where it runs differs.

This process's writers queue for the thread (first come, first served); whatever queued
while a transaction ran is run next in the same hop as one group commit (each write in its
own SAVEPOINT, so each still succeeds or fails alone), and their callers are woken together. Other processes are kept out by BEGIN IMMEDIATE +
busy_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL

T = TypeVar("T")
Tx = Callable[[Connection], T]


class _Write(Generic[T]):
    """One queued transaction; `started`/`skipped` change under the writer's guard."""

    __slots__ = ("fn", "future", "skipped", "started")

    def __init__(self, fn: Tx[T], future: asyncio.Future[T]) -> None:
        self.fn = fn
        self.future = future
        self.started = False
        self.skipped = False


class _GroupLost(Exception):
    """SQLite rolled a whole group transaction back while one of its writes failed."""


_STOP = object()
Outcome = tuple["_Write[Any]", bool, Any]


class SQLiteWriter:
    """One pysqlite connection and one thread that runs whole write transactions."""

    def __init__(self, url: URL, configure: Callable[[Engine], None]) -> None:
        self._url = url.set(drivername="sqlite+pysqlite")
        self._configure = configure
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> None:
        engine = create_engine(self._url)
        self._configure(engine)  # the same PRAGMAs and BEGIN IMMEDIATE as the async engine
        try:
            self._conn = engine.connect()
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine

    def _close(self) -> None:
        conn, engine = self._conn, self._engine
        self._conn = self._engine = None
        try:
            if conn is not None:
                conn.close()
        finally:
            if engine is not None:
                engine.dispose()

    async def start(self) -> None:
        """Start the thread and open the connection in it."""
        if self._thread is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._stopped = loop.create_future()
        thread = threading.Thread(
            target=self._main, args=(loop, opened), name="drawbridge-sqlite", daemon=True
        )
        thread.start()
        self._thread = thread
        try:
            await opened
        except BaseException:
            self._thread = None
            raise

    async def close(self) -> None:
        """Run what is queued, close the connection, end the thread."""
        thread, self._thread = self._thread, None
        if thread is None or self._stopped is None:
            return
        self._queue.put(_STOP)
        await asyncio.shield(self._stopped)

    @staticmethod
    def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _main(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        try:
            self._open()
        except BaseException as error:
            loop.call_soon_threadsafe(self._settle, opened, False, error)
            return
        loop.call_soon_threadsafe(self._settle, opened, True, None)
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            outcomes: list[Outcome] = []
            runnable: list[_Write[Any]] = []
            for item in batch:
                if item is _STOP:
                    stopping = True
                    continue
                if stopping:
                    outcomes.append((item, False, RuntimeError("the database was closed")))
                    continue
                with self._guard:
                    if item.skipped:
                        continue
                    item.started = True
                runnable.append(item)
            if len(runnable) == 1:
                outcomes.append(self._alone(runnable[0]))
            elif runnable:
                outcomes.extend(self._group(runnable))
            if outcomes:
                loop.call_soon_threadsafe(self._wake, outcomes)
        try:
            self._close()
        finally:
            if self._stopped is not None:
                loop.call_soon_threadsafe(self._settle, self._stopped, True, None)

    def _wake(self, outcomes: list[Outcome]) -> None:
        for item, ok, value in outcomes:
            self._settle(item.future, ok, value)

    def _alone(self, item: _Write[Any]) -> Outcome:
        try:
            return (item, True, self._transaction(item.fn))
        except BaseException as error:
            return (item, False, error)

    def _group(self, items: list[_Write[Any]]) -> list[Outcome]:
        """Several queued transactions under one BEGIN IMMEDIATE … COMMIT (group commit).

        Each runs inside its own SAVEPOINT: one that raises is rolled back to it and fails
        alone, as if it had been its own transaction; the others commit together, and only
        then are their callers told. If SQLite drops the whole transaction (it may on a full
        disk or an I/O error) or COMMIT fails, each is run again on its own.
        """
        conn = self._connection()
        raw = conn.connection.dbapi_connection
        assert raw is not None
        outcomes: list[Outcome] = []
        try:
            trans = conn.begin()  # BEGIN IMMEDIATE (the begin event)
        except BaseException as error:  # locked: each caller retries on its own schedule
            return [(item, False, error) for item in items]
        try:
            for item in items:
                raw.execute("SAVEPOINT drawbridge_write")
                try:
                    value = item.fn(conn)
                except BaseException as error:
                    if not raw.in_transaction:
                        raise _GroupLost() from error
                    raw.execute("ROLLBACK TO drawbridge_write")
                    raw.execute("RELEASE drawbridge_write")
                    outcomes.append((item, False, error))
                else:
                    raw.execute("RELEASE drawbridge_write")
                    outcomes.append((item, True, value))
            trans.commit()
        except BaseException:
            with contextlib.suppress(BaseException):
                if conn.in_transaction():
                    conn.rollback()
            return [self._alone(item) for item in items]
        return outcomes

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None or self._engine is None:
            raise RuntimeError("Database is not started; use `async with Database(url)`")
        if conn.invalidated or conn.closed:
            conn = self._conn = self._engine.connect()
        return conn

    def _transaction(self, fn: Tx[T]) -> T:
        conn = self._connection()
        try:
            with conn.begin():
                return fn(conn)
        except BaseException:
            # A failed BEGIN IMMEDIATE (locked) can leave SQLAlchemy's transaction half-made.
            if conn.in_transaction():
                with contextlib.suppress(Exception):
                    conn.rollback()
            raise

    async def run(self, fn: Tx[T]) -> T:
        """Run `fn(conn)` inside BEGIN IMMEDIATE … COMMIT in the writer thread.

        Cancelled while still queued, it never runs; cancelled once running, the transaction
        still finishes (committed or rolled back) before the cancellation goes on.
        """
        loop = self._loop
        if self._thread is None or loop is None:
            raise RuntimeError("Database is not started; use `async with Database(url)`")
        item = _Write(fn, loop.create_future())
        self._queue.put(item)
        try:
            return await asyncio.shield(item.future)
        except asyncio.CancelledError:
            with self._guard:
                if not item.started:
                    item.skipped = True
                    raise
            with contextlib.suppress(BaseException):
                await asyncio.wait({item.future})
            raise
