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

Raw-capable writes (`run_raw`; Database.write_tx(inline=True)) run on the event loop's own
thread instead, on the same connection, as Core statements compiled once and sent straight to
pysqlite (~40 µs apiece instead of ~250 µs through SQLAlchemy's execution): at once when the
connection is free; when the thread is in a batch, at its end (the thread waits up to
LOOP_TURN_WAIT for the loop's turn); in the thread when SQLite would make the loop wait or fails,
which then reports errors the usual way. The loop never waits for a lock and never checkpoints:
between the thread's batches the connection rests with busy_timeout and wal_autocheckpoint 0,
and the thread sets both as configured for its own batches (its commits checkpoint).
Reads of that kind (`read_inline`) use a read-only connection of the loop's own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, TextClause

T = TypeVar("T")
Tx = Callable[[Connection], T]


class _Write(Generic[T]):
    """One queued transaction; `started`/`skipped` change under the writer's guard."""

    __slots__ = ("fn", "future", "raw", "skipped", "started")

    def __init__(self, fn: Tx[T], future: asyncio.Future[T], raw: bool) -> None:
        self.fn = fn
        self.future = future
        self.raw = raw  # run on a RawConnection (see `run_raw`)
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
        # held by whoever uses the connection: the thread for a batch, the loop for an inline
        self._using = threading.Lock()
        self._prepared: dict[tuple[int, tuple[str, ...]], _Prepared] = {}
        # the connection's configured busy_timeout and wal_autocheckpoint, for the thread's
        # batches; between batches both are 0 on `_rest` (see `_for_the_loop`)
        self._pragmas: tuple[int, int] | None = None
        self._rest: Any = None
        self._reader: sqlite3.Connection | None = None  # the loop's, for `read_inline`
        # raw writes waiting on the loop for the thread's batch to end, and the handshake
        self._waiting: list[tuple[Tx[Any], asyncio.Future[Any]]] = []
        self._loop_waits = False
        self._turn = threading.Event()
        self._slice_began: float | None = None  # the loop turn's first inline write
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
        with self._using:
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
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        if thread is None or self._stopped is None:
            return
        self._queue.put(_STOP)
        await asyncio.shield(self._stopped)
        waiting, self._waiting = self._waiting, []
        for _, future in waiting:
            self._settle(future, False, RuntimeError("the database was closed"))

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
            with self._using:
                if runnable:
                    self._for_the_thread()
                    try:
                        if len(runnable) == 1:
                            outcomes.append(self._alone(runnable[0]))
                        else:
                            outcomes.extend(self._group(runnable))
                    finally:
                        self._for_the_loop(self._dbapi())
            if outcomes:
                loop.call_soon_threadsafe(self._wake, outcomes)
            if self._loop_waits and not stopping:
                # raw writes wait on the loop for this batch's end: their turn first
                self._turn.clear()
                loop.call_soon_threadsafe(self._take_turn)
                self._turn.wait(LOOP_TURN_WAIT)
        try:
            self._close()
        finally:
            if self._stopped is not None:
                loop.call_soon_threadsafe(self._settle, self._stopped, True, None)

    def _dbapi(self) -> Any:
        conn = self._conn
        if conn is None or conn.invalidated or conn.closed:
            return None
        return conn.connection.dbapi_connection

    def _for_the_thread(self) -> None:
        """Before a batch of the thread: the connection waits for other processes' locks
        (busy_timeout) and checkpoints on COMMIT (wal_autocheckpoint) as configured."""
        raw = self._dbapi()
        if raw is None or raw is not self._rest or self._pragmas is None:
            return  # a connection not at rest has them as configured already
        self._rest = None
        busy, checkpoint = self._pragmas
        with contextlib.suppress(sqlite3.Error):
            raw.execute(f"PRAGMA busy_timeout = {busy}")
            raw.execute(f"PRAGMA wal_autocheckpoint = {checkpoint}")

    def _for_the_loop(self, raw: Any) -> None:
        """After a batch of the thread (and before the loop's first write): the connection
        at rest never waits for a lock and leaves checkpoints to the thread, so that a write
        on the loop needs no PRAGMA of its own (two of them cost ~100 µs there, cold)."""
        if raw is None or raw is self._rest or raw.in_transaction:
            return
        try:
            if self._pragmas is None:
                busy = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
                checkpoint = int(raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
                self._pragmas = (busy, checkpoint)
            raw.execute("PRAGMA busy_timeout = 0")
            raw.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error:
            return
        self._rest = raw

    def _wake(self, outcomes: list[Outcome]) -> None:
        for item, ok, value in outcomes:
            self._settle(item.future, ok, value)

    def _alone(self, item: _Write[Any]) -> Outcome:
        try:
            return (item, True, self._transaction(item.fn, item.raw))
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
                ok, value = _in_savepoint(raw, item.fn, self._raw_for(raw) if item.raw else conn)
                outcomes.append((item, ok, value))
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

    def _raw_for(self, raw: Any) -> Connection:
        assert self._engine is not None
        return cast(Connection, RawConnection(raw, self._engine.dialect, self._prepared))

    def _transaction(self, fn: Tx[T], raw: bool = False) -> T:
        conn = self._connection()
        if raw:
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            try:
                dbapi.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise _wrapped("BEGIN IMMEDIATE", (), error) from error
            try:
                value = fn(self._raw_for(dbapi))
                dbapi.execute("COMMIT")
            except sqlite3.Error as error:
                _rollback(dbapi)
                raise _wrapped("COMMIT", (), error) from error
            except BaseException:
                _rollback(dbapi)
                raise
            return value
        try:
            with conn.begin():
                return fn(conn)
        except BaseException:
            # A failed BEGIN IMMEDIATE (locked) can leave SQLAlchemy's transaction half-made.
            if conn.in_transaction():
                with contextlib.suppress(Exception):
                    conn.rollback()
            raise

    async def run_raw(self, fn: Tx[T]) -> T:
        """Run the raw-capable write `fn` (it gets a RawConnection): on this, the loop's,
        thread right away when the connection is free; when the writer thread is in a batch,
        on the loop as soon as that batch ends (the thread then waits for the loop's turn,
        up to LOOP_TURN_WAIT); in the writer thread when SQLite would make the loop wait
        (another process holds the write lock) or fails (errors reported as `run` does)."""
        await self._fair_to_the_loop()
        state, value = self._now(fn)
        if state is _RAN:
            return cast(T, value)
        if state is _ELSEWHERE:
            return await self.run(fn, raw=True)
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[T] = loop.create_future()
        self._waiting.append((fn, future))
        self._loop_waits = True
        if self._using.acquire(blocking=False):  # the batch ended meanwhile: no call-back
            self._take_turn(held=True)
        return await future

    async def _fair_to_the_loop(self) -> None:
        """A write on the loop does not yield: code writing many in a row would hold the loop.
        Once writes have run on it for INLINE_SLICE within one loop turn, yield first."""
        began = self._slice_began
        if began is not None and time.perf_counter() - began > INLINE_SLICE:
            await asyncio.sleep(0)  # the slice ends (_end_slice runs first) …
        if self._slice_began is None:  # … and this write begins the next
            self._slice_began = time.perf_counter()
            asyncio.get_running_loop().call_soon(self._end_slice)

    def _end_slice(self) -> None:
        self._slice_began = None

    def _now(self, fn: Tx[T]) -> tuple[object, T | None]:
        if self._thread is None:
            return _ELSEWHERE, None
        if not self._using.acquire(blocking=False):
            return _BUSY, None
        try:
            outcomes = self._run_here([fn])
        finally:
            self._using.release()
        if outcomes is None:
            return _ELSEWHERE, None
        ((ok, value),) = outcomes
        if ok is None:
            return _ELSEWHERE, None
        if not ok:
            raise value
        return _RAN, value

    def _take_turn(self, *, held: bool = False) -> None:
        """The loop's turn (after a batch of the thread): every waiting raw write, as one
        transaction with a SAVEPOINT each, like the thread's group commit."""
        try:
            if not held and not self._using.acquire(blocking=False):
                return  # the thread is in a batch again; it calls back after it
            try:
                live = [(fn, future) for fn, future in self._waiting if not future.done()]
                # a turn is bounded like a slice: the rest wait for the next one, soon
                live, self._waiting = live[:TURN_MAX], live[TURN_MAX:]
                self._loop_waits = bool(self._waiting)
                if self._waiting and self._loop is not None:
                    self._loop.call_soon(self._take_turn)
                if not live:
                    return
                outcomes = self._run_here([fn for fn, _ in live])
            finally:
                self._using.release()
            for (fn, future), outcome in zip(
                live, outcomes or [(None, None)] * len(live), strict=True
            ):
                ok, value = outcome
                if ok is None:
                    self._to_thread(fn, future)
                else:
                    self._settle(future, ok, value)
        finally:
            self._turn.set()

    def _to_thread(self, fn: Tx[Any], future: asyncio.Future[Any]) -> None:
        """A raw write the loop could not run: the thread runs it; its outcome is `future`'s."""
        task = asyncio.ensure_future(self.run(fn, raw=True))

        def done(finished: asyncio.Future[Any]) -> None:
            if future.done():
                if not finished.cancelled():
                    finished.exception()  # retrieved: nobody waits for it now
            elif finished.cancelled():
                future.cancel()
            elif (error := finished.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(finished.result())

        task.add_done_callback(done)
        future.add_done_callback(lambda f: f.cancelled() and task.cancel())

    def _run_here(self, fns: list[Tx[Any]]) -> list[tuple[bool | None, Any]] | None:
        """Run `fns` on this thread in one transaction (several: each in a SAVEPOINT), holding
        `_using`: per write (True, value), (False, its own exception: rolled back to its
        SAVEPOINT), or (None, None): SQLite refused it, run it in the thread. None: nothing
        could run here (the write lock is another process's, the connection is gone)."""
        conn, engine = self._conn, self._engine
        if conn is None or engine is None or conn.invalidated or conn.closed:
            return None
        if conn.in_transaction():
            return None
        raw = conn.connection.dbapi_connection
        if raw is None or raw.in_transaction:
            return None
        self._for_the_loop(raw)
        if raw is not self._rest:
            return None  # it could not be set to wait for nothing: the thread runs these
        try:
            raw.execute("BEGIN IMMEDIATE")  # busy_timeout 0: another process's lock → at once
        except sqlite3.Error:
            return None
        return self._savepoints(raw, fns)

    def _savepoints(self, raw: Any, fns: list[Tx[Any]]) -> list[tuple[bool | None, Any]]:
        conn = self._raw_for(raw)
        if len(fns) == 1:
            return [self._only(raw, fns[0], conn)]
        outcomes: list[tuple[bool | None, Any]] = []
        try:
            for fn in fns:
                ok, value = _in_savepoint(raw, fn, conn)
                outcomes.append((True, value) if ok else _failed(value))
            raw.execute("COMMIT")
        except (sqlite3.Error, DBAPIError, _GroupLost):
            _rollback(raw)
            # nothing was written: the thread runs each again; an exception of a write's
            # own stands (it wrote nothing either way)
            again: list[tuple[bool | None, Any]] = [
                (None, None) if ok else (ok, value) for ok, value in outcomes
            ]
            return again + [(None, None)] * (len(fns) - len(outcomes))
        except BaseException:
            _rollback(raw)
            raise
        return outcomes

    @staticmethod
    def _only(raw: Any, fn: Tx[Any], conn: Any) -> tuple[bool | None, Any]:
        """A write alone in its transaction needs no SAVEPOINT: failing, it is rolled back
        whole, which is the same."""
        try:
            value = fn(conn)
        except BaseException as error:
            _rollback(raw)
            return _failed(error)
        try:
            raw.execute("COMMIT")
        except sqlite3.Error:
            _rollback(raw)
            return None, None
        return True, value

    def read_inline(self, fn: Tx[T]) -> tuple[bool, T | None]:
        """Run the read-only `fn` now on this (the loop's) thread, on a connection of its
        own, in one snapshot: (True, its value); or (False, None) when SQLite would make it
        wait or fails (then read the usual way). WAL readers wait for nobody, so this is a
        point lookup's ~30 µs instead of a thread hop per statement."""
        engine = self._engine
        if self._thread is None or engine is None:
            return False, None
        reader = self._reader
        try:
            if reader is None:
                reader = self._reader = self._open_reader()
            reader.execute("BEGIN")
        except sqlite3.Error:
            return False, None
        try:
            value = fn(cast(Connection, RawConnection(reader, engine.dialect, self._prepared)))
        except (sqlite3.Error, DBAPIError):
            return False, None
        finally:
            _rollback(reader)  # nothing was written: ending the snapshot is all
        return True, value

    def _open_reader(self) -> sqlite3.Connection:
        database = self._url.database
        if not database:
            raise sqlite3.OperationalError("no database file")
        reader = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        try:
            reader.execute("PRAGMA busy_timeout = 0")
            reader.execute("PRAGMA query_only = ON")
        except BaseException:
            reader.close()
            raise
        return reader

    async def run(self, fn: Tx[T], *, raw: bool = False) -> T:
        """Run `fn(conn)` inside BEGIN IMMEDIATE … COMMIT in the writer thread (with `raw`,
        on a RawConnection, as `run_raw` would).

        Cancelled while still queued, it never runs; cancelled once running, the transaction
        still finishes (committed or rolled back) before the cancellation goes on.
        """
        loop = self._loop
        if self._thread is None or loop is None:
            raise RuntimeError("Database is not started; use `async with Database(url)`")
        item = _Write(fn, loop.create_future(), raw)
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


def _in_savepoint(raw: Any, fn: Tx[Any], conn: Any) -> tuple[bool, Any]:
    """Run `fn(conn)` inside a SAVEPOINT of the open transaction: (True, its value), or
    (False, the exception it raised) rolled back to the SAVEPOINT; _GroupLost when SQLite
    dropped the whole transaction meanwhile (it may on a full disk or an I/O error)."""
    raw.execute("SAVEPOINT drawbridge_write")
    try:
        value = fn(conn)
    except BaseException as error:
        if not raw.in_transaction:
            raise _GroupLost() from error
        raw.execute("ROLLBACK TO drawbridge_write")
        raw.execute("RELEASE drawbridge_write")
        return False, error
    raw.execute("RELEASE drawbridge_write")
    return True, value


def _failed(error: BaseException) -> tuple[bool | None, Any]:
    """What a write on the loop that raised `error` (and wrote nothing) comes to: (None, None)
    when SQLite refused it (the thread runs it again and says why), (False, error) for an
    exception of its own; anything else (a cancellation, an exit) goes on."""
    if isinstance(error, (sqlite3.Error, DBAPIError)):
        return None, None
    if isinstance(error, Exception):
        return False, error
    raise error


def _wrapped(sql: str, params: Any, error: sqlite3.Error) -> DBAPIError:
    """The SQLAlchemy error (IntegrityError, OperationalError, …) SQLAlchemy would raise."""
    return cast(DBAPIError, DBAPIError.instance(sql, params, error, sqlite3.Error))


def _rollback(raw: Any) -> None:
    if raw.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            raw.execute("ROLLBACK")


_PREPARED_MAX = 512
_RAN, _BUSY, _ELSEWHERE = object(), object(), object()
LOOP_TURN_WAIT = 0.05  # how long the thread holds back its next batch for the loop's turn
INLINE_SLICE = 0.002  # writes on the loop within one of its turns before a write yields first
TURN_MAX = 16  # waiting writes run in one turn of the loop's


class _Prepared:
    """One Core statement compiled for SQLite, with named parameters, for the parameter names
    it was given: its SQL, which parameters need a bind processor (or go by another name in
    the SQL), the values the statement itself fixes, the Python-side column defaults it
    leaves to the caller, and how to turn what it returns into rows. pysqlite takes the
    parameters as a dict: those needing nothing are passed as they are, in C."""

    __slots__ = (
        "defaults",
        "dynamic",
        "fixed",
        "missing",
        "processed",
        "results",
        "row",
        "sql",
        "statement",
    )

    def __init__(self, statement: ClauseElement, dialect: Dialect, keys: tuple[str, ...]) -> None:
        if not isinstance(statement, ClauseElement) or isinstance(statement, TextClause):
            raise TypeError("a RawConnection runs Core statements only")
        compiled = cast(
            SQLCompiler, statement.compile(dialect=_named(dialect), column_keys=list(keys))
        )
        if "POSTCOMPILE" in compiled.string:  # an IN list expanded per execution
            raise TypeError("a RawConnection cannot expand IN lists; write equalities")
        defaults: dict[str, Any] = {}
        for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
            default = column.default if column in compiled.insert_prefetch else column.onupdate
            if default is None or not (default.is_scalar or default.is_callable):
                raise TypeError(f"a RawConnection cannot compute {column.key}'s default")
            defaults[column.key] = default
        columns = list(getattr(statement, "exported_columns", ()))
        self.statement = statement  # keeps the id() this is cached under alive
        self.sql = compiled.string
        processors: dict[str, Any] = dict(compiled._bind_processors)
        escaped: Mapping[str, str] = compiled.escaped_bind_names or {}
        given = set(keys)
        # given parameters needing a processor or a rename: (key, name in the SQL, processor)
        self.processed: list[tuple[str, str, Any]] = []
        # columns whose Python-side default applies: (name in the SQL, default, processor)
        self.defaults: list[tuple[str, Any, Any]] = []
        self.fixed: dict[str, Any] = {}  # values the statement fixes, processed once
        self.dynamic: list[tuple[str, Any, Any]] = []  # bound to a callable: each time
        self.missing: list[str] = []  # required and not given
        for name, bind in compiled.binds.items():
            sql_name, processor, key = escaped.get(name, name), processors.get(name), bind.key
            if key in given:
                if processor is not None or sql_name != key:
                    self.processed.append((key, sql_name, processor))
            elif key in defaults:
                self.defaults.append((sql_name, defaults[key], processor))
            elif bind.required:
                self.missing.append(key)
            elif bind.callable is not None:
                self.dynamic.append((sql_name, bind, processor))
            else:
                value = bind.effective_value
                self.fixed[sql_name] = _processed(processor, value)
        # what SQLAlchemy's result would do to each returned value (e.g. text → datetime)
        self.results = [c.type._cached_result_processor(dialect, None) for c in columns]
        names = [getattr(c, "key", None) or f"_{n}" for n, c in enumerate(columns)]
        self.row: type[tuple[Any, ...]] = collections.namedtuple(  # type: ignore[misc]
            "RawRow", names, rename=True
        )

    def values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if self.missing:
            raise TypeError(f"a value is required for bind parameter {self.missing[0]!r}")
        out = dict(params)  # names the statement does not use are ignored by SQLite
        if self.fixed:
            out.update(self.fixed)
        for key, name, processor in self.processed:
            out[name] = _processed(processor, params[key])
        for name, default, processor in self.defaults:
            arg = default.arg
            out[name] = _processed(processor, arg(None) if default.is_callable else arg)
        for name, bind, processor in self.dynamic:
            out[name] = _processed(processor, bind.effective_value)
        return out

    def rows(self, fetched: list[tuple[Any, ...]]) -> list[Any]:
        make, results = self.row._make, self.results  # type: ignore[attr-defined]
        if not any(results):
            return [make(r) for r in fetched]
        return [
            make(v if p is None or v is None else p(v) for p, v in zip(results, r, strict=True))
            for r in fetched
        ]


def _processed(processor: Any, value: Any) -> Any:
    return value if processor is None or value is None else processor(value)


_NAMED: dict[int, Dialect] = {}


def _named(dialect: Dialect) -> Dialect:
    """The engine's SQLite dialect (as it found the server: RETURNING and the like), but
    compiling named parameters, which pysqlite takes as a dict."""
    named = _NAMED.get(id(dialect))
    if named is None or getattr(named, "_drawbridge_of", None) is not dialect:
        named = copy.copy(dialect)
        named.paramstyle, named.positional = "named", False
        named._drawbridge_of = dialect  # type: ignore[attr-defined]
        _NAMED[id(dialect)] = named
    return named


class RawRows(list[Any]):
    """Every row a statement returned (all fetched), with the part of SQLAlchemy's Result
    API the raw-capable transactions use. Rows are named tuples; `row._asdict()` is a dict."""

    rowcount: int = -1

    def first(self) -> Any:
        return self[0] if self else None

    def scalar(self) -> Any:
        return self[0][0] if self else None

    def scalar_one_or_none(self) -> Any:
        if len(self) > 1:
            raise ValueError("more than one row where one or none was expected")
        return self.scalar()


class RawConnection:
    """What a raw-capable transaction sees for SQLAlchemy's `Connection`: `dialect` and
    `execute` of Core statements, straight on the pysqlite connection (see `run_raw`)."""

    __slots__ = ("_cache", "_raw", "dialect")

    def __init__(
        self, raw: Any, dialect: Dialect, cache: dict[tuple[int, tuple[str, ...]], _Prepared]
    ) -> None:
        self._raw = raw
        self._cache = cache
        self.dialect = dialect

    def execute(self, statement: ClauseElement, params: Mapping[str, Any] | None = None) -> RawRows:
        params = params or {}
        keys = tuple(params)
        key = (id(statement), keys)
        prepared = self._cache.get(key)
        if prepared is None or prepared.statement is not statement:
            if len(self._cache) >= _PREPARED_MAX:
                self._cache.clear()
            prepared = self._cache[key] = _Prepared(statement, self.dialect, keys)
        values = prepared.values(params)
        try:
            cursor = self._raw.execute(prepared.sql, values)
            fetched = cursor.fetchall() if cursor.description else ()
        except sqlite3.Error as error:
            raise _wrapped(prepared.sql, values, error) from error
        rows = RawRows(prepared.rows(list(fetched)))
        rows.rowcount = cursor.rowcount
        return rows
