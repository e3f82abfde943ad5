"""The daemon's `Store` on one thread of its own, so a locked or slow database freezes nothing.

Every call runs on a single-thread executor that owns the SQLite connection and is awaited from
the event loop: `await thread.commit_poll(...)`. Polls, deliveries and the watchdog go on while
the thread waits for a lock.

A call gets `budget_s` seconds from the moment it is asked, queueing included: it tries with a
short busy timeout and retries while the database is locked, a bounded number of times, then
raises `StoreError`. A call still queued when its budget is spent gets one attempt that does not
wait for the lock, so a queue of calls behind a held lock fails fast instead of adding up.

Delivery outcomes the database refuses (locked, full, …) are not lost and not resent: the
messages did go out. `mark_sent`, `mark_failed` and `mark_reported` are kept in memory, in
order, in an `outbox.Overlay`, and written before the next call once the database takes them;
until then the overlay is laid over what `pending_deliveries` and `expired_unreported` return.
`expire` that fails expires nothing this round (it is retried on the next). Their failure is
logged, never raised.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

from alerter.errors import StoreError
from alerter.outbox import OUTCOMES, Overlay

logger = logging.getLogger(__name__)

BUDGET_S = 2.0  # per call, from the moment it is asked: well inside a poll's alert deadline
BUSY_TIMEOUT_S = 0.5  # one attempt's wait for another process's lock
ATTEMPTS = 4


def locked(error: BaseException) -> bool:
    """The database is locked or busy (another connection holds the lock): worth a retry."""
    cause = error.__cause__
    if isinstance(cause, sqlite3.Error) and getattr(cause, "sqlite_errorcode", None) is not None:
        return cause.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error)


class StoreThread:
    """Awaitable calls of one `Store`, all on one dedicated thread (`store` may be None until
    the first call, for tests that never touch the database)."""

    def __init__(self, store, *, budget_s: float = BUDGET_S, busy_timeout_s: float = BUSY_TIMEOUT_S, attempts: int = ATTEMPTS):
        self.store = store
        self.budget_s = budget_s
        self.busy_timeout_s = busy_timeout_s
        self.attempts = attempts
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.overlay = Overlay()  # delivery outcomes not yet written; touched only on the store's thread

    # ------------------------------------------------------------ calls

    def __getattr__(self, name: str):
        if name.startswith("_") or name == "store" or not callable(getattr(type(self.store), name, None)):
            raise AttributeError(name)
        return functools.partial(self.call, name)

    async def call(self, name: str, *args, **kwargs):
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.budget_s
        return await loop.run_in_executor(self.executor, functools.partial(self._run, name, args, kwargs, deadline))

    async def close(self) -> None:
        """Write what was deferred (if the database takes it now), close the store, end the thread."""
        try:
            await self.call("close")
        finally:
            self.executor.shutdown(wait=False)

    # ------------------------------------------------------------ on the thread

    def _run(self, name: str, args: tuple, kwargs: dict, deadline: float):
        self._flush()
        if name == "close" and self.overlay:
            logger.error("%d delivery outcome(s) could not be recorded before closing: those alerts may be sent again",
                         len(self.overlay))
        if name in OUTCOMES:
            arguments = self._arguments(name, args, kwargs)
            if self.overlay:  # keep the order: behind the ones already waiting
                return self._defer(name, arguments, "earlier outcomes are still waiting")
            try:
                return self._attempt(name, (), arguments, deadline)
            except StoreError as e:
                return self._defer(name, arguments, str(e))
        if name == "expire":
            try:
                return self._attempt(name, args, kwargs, deadline)
            except StoreError as e:
                logger.warning("nothing expired this round: %s", e)
                return []
        result = self._attempt(name, args, kwargs, deadline)
        if name == "pending_deliveries":
            return self.overlay.pending(result, args[0] if args else kwargs.get("due_by"))
        if name == "expired_unreported":
            return self.overlay.unreported(result)
        return result

    def _attempt(self, name: str, args: tuple, kwargs: dict, deadline: float):
        method = getattr(self.store, name)
        for attempt in range(1, self.attempts + 1):
            remaining = deadline - time.monotonic()
            self.store.busy_timeout = max(0.0, min(self.busy_timeout_s, remaining))
            try:
                return method(*args, **kwargs)
            except StoreError as e:
                if not locked(e) or attempt == self.attempts or time.monotonic() >= deadline:
                    raise
                time.sleep(min(0.02 * attempt, max(0.0, deadline - time.monotonic())))  # a lock taken without waiting
        raise AssertionError("unreachable")

    def _flush(self) -> None:
        """Write the deferred outcomes, in order, without waiting for a lock; stop at the first refusal."""
        if not self.overlay:
            return
        self.store.busy_timeout = 0.0
        if self.overlay.flush(self.store):
            logger.warning("the delivery outcomes kept in memory are recorded now")

    def _arguments(self, name: str, args: tuple, kwargs: dict) -> dict:
        """A delivery outcome's arguments by name, its ids as lists: a generator would be spent
        by a refused attempt, before the outcome is kept."""
        arguments = inspect.signature(getattr(type(self.store), name)).bind(self.store, *args, **kwargs).arguments
        arguments.pop("self")
        for iterable in ("alert_ids", "folded"):
            if iterable in arguments:
                arguments[iterable] = list(arguments[iterable])
        return arguments

    def _defer(self, name: str, arguments: dict, reason: str) -> None:
        if not self.overlay:
            logger.warning("cannot record delivery outcomes, keeping them in memory until the database takes them: %s", reason)
        self.overlay.add(name, arguments)
