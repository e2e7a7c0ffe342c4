"""A SQLite file used from asyncio: one connection, on one thread of its own, so that statements
of one store run in order and never block the event loop. The timeline store, the search index
and the message key store are each one of these, in their own file.

Every file runs in WAL mode with ``secure_delete`` on (what is deleted is overwritten: erasure)
and a busy timeout; a subclass says how durable its commits are and makes its schema.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from chat.errors import IntegrityError, OperationalError, PersistenceError

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000


class SqliteFile:
    what: ClassVar[str] = "sqlite store"  # for errors: "timeline store", "search index", ...
    synchronous: ClassVar[str] = "NORMAL"  # NORMAL survives a crash of the process; FULL a power cut
    sqlite: ClassVar[Any] = sqlite3  # the DB-API module (the search index uses pysqlite3)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: Any = None  # touched only on the executor's thread

    def make_schema(self, conn: Any) -> None:
        """Create the schema, or bring an older one up to date (in a write transaction)."""
        raise NotImplementedError

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{self.path.name}")
        try:
            await self._submit(self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await self._submit(self._disconnect, executor)
        finally:
            executor.shutdown(wait=False)  # its one thread is idle now

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def _run(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(connection)`` on the file's thread."""

        def call() -> T:
            if self._conn is None:
                raise OperationalError(f"{self.what} {self.path} is not open")
            return fn(self._conn)

        return await self._submit(call)

    async def _submit(self, fn: Callable[[], T], executor: ThreadPoolExecutor | None = None) -> T:
        """Run ``fn()`` on the file's thread, with sqlite errors translated."""
        executor = executor or self._executor
        if executor is None:
            raise OperationalError(f"{self.what} {self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except self.sqlite.OperationalError as exc:  # locked, busy, I/O, cannot open
            raise OperationalError(f"sqlite {self.path}: {exc}") from exc
        except self.sqlite.IntegrityError as exc:
            raise IntegrityError(f"sqlite {self.path}: {exc}") from exc
        except self.sqlite.Error as exc:
            raise PersistenceError(f"sqlite {self.path}: {exc}") from exc

    # On the file's thread

    def _connect(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OperationalError(f"cannot create {self.path.parent}: {exc}") from exc
        # isolation_level=None: no implicit transactions; writes use BEGIN IMMEDIATE.
        conn = self.sqlite.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA secure_delete = ON")
            set_up_wal(conn, self.sqlite.OperationalError, lambda: in_transaction(conn, lambda: self.make_schema(conn)))
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def in_transaction(conn: Any, work: Callable[[], T]) -> T:
    """Run ``work`` in a write transaction taken up front, so busy_timeout applies."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
    except BaseException:
        if conn.in_transaction:  # some errors have rolled back already
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def set_up_wal(conn: Any, locked_error: type[Exception], make_schema: Callable[[], Any]) -> None:
    """Switch a connection's file to WAL and make its schema. Processes opening a fresh file at
    once (gateways and a worker) can get "database is locked" here at once, without waiting out
    busy_timeout: it is tried again for as long as busy_timeout would have waited.
    ``locked_error``: the OperationalError of the sqlite module in use (stdlib or pysqlite3)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            make_schema()
            return
        except locked_error as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
