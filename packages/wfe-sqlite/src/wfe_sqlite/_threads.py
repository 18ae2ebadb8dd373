"""Threads of a store's own: where its blocking SQLite calls run.

A call through ``anyio.to_thread.run_sync`` costs the event loop about 60 µs of CPU (a
capacity limiter, a cancel scope, a future and a task wake-up each way); a thread of the
store's own, fed through a :class:`queue.SimpleQueue` and answering with the loop's
``call_soon_threadsafe``, about 17-20 µs. Every write and every read group of a store makes
one such call, so they go to a :class:`StoreThreads`: the writer has one thread (its
transactions run one at a time anyway), the readers one per reader connection.

The threads are daemons started on first use and stopped by :meth:`StoreThreads.stop`
(the store's close): the jobs handed over before it still run to the end, in order.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import anyio
import anyio.lowlevel

from wfe_core.errors import ProviderError

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("wfe_sqlite.engine")

A = TypeVar("A")


class _Job(Generic[A]):
    __slots__ = ("arg", "done", "error", "fn", "wake")

    def __init__(self, fn: Callable[[A], None], arg: A, done: anyio.Event) -> None:
        self.fn = fn
        self.arg = arg
        self.done = done
        #: What ``fn`` raised (it should record its own failures in ``arg`` instead).
        self.error: BaseException | None = None
        #: Calls a function soon on the event loop, from any thread.
        self.wake: Callable[[Callable[[], object]], object] | None = None


class StoreThreads:
    """Up to ``size`` threads running the jobs handed to :meth:`run`, in the order handed.

    Used from one event loop (the store's); the threads answer it through its token.
    """

    def __init__(self, name: str, size: int, where: str) -> None:
        self.name = name
        self.size = size
        self.where = where
        self._queue: queue.SimpleQueue[_Job[object] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Jobs handed over and not answered yet (touched on the event loop only): a new
        # thread starts when there are more than threads, up to ``size``.
        self._pending = 0
        self._stopped = False
        self._call_soon: Callable[[Callable[[], object]], object] | None = None

    async def run(self, fn: Callable[[A], None], arg: A) -> None:
        """Run ``fn(arg)`` in one of the threads and wait until it has returned.

        ``fn`` records its results and failures in ``arg``; an exception it lets through is
        raised here. Once handed over, the job runs to the end even when this call is
        cancelled (callers that others wait for shield it).
        """
        if self._stopped:
            raise ProviderError(f"{self.where} is closed")
        call_soon = self._call_soon
        if call_soon is None:
            call_soon = self._call_soon = _call_soon_from_threads()
        job = _Job(fn, arg, anyio.Event())
        job.wake = call_soon
        self._pending += 1
        if self._pending > len(self._threads) < self.size:
            self._start_thread()
        self._queue.put(job)  # type: ignore[arg-type]
        try:
            await job.done.wait()
        finally:
            self._pending -= 1
        if job.error is not None:
            raise job.error

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._serve,
            name=f"wfe-sqlite-{self.name}-{len(self._threads)}",
            # A daemon: a program ending without closing its store must not hang at exit (a
            # transaction cut short there is rolled back by SQLite, as in a crash).
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)

    def _serve(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is None:
                return
            try:
                job.fn(job.arg)
            except BaseException as exc:
                job.error = exc
            assert job.wake is not None
            try:
                job.wake(job.done.set)
            except RuntimeError:
                # The event loop is closed: nobody is waiting for the answer any more.
                logger.debug(
                    "%s: the event loop closed before a %s job's answer", self.where, self.name
                )

    def stop(self) -> list[threading.Thread]:
        """Hand over no more jobs; the threads end after the jobs handed over so far.

        Call on the event loop; returns the threads, to join outside it.
        """
        self._stopped = True
        for _ in self._threads:
            self._queue.put(None)
        return list(self._threads)


def _call_soon_from_threads() -> Callable[[Callable[[], object]], object]:
    """How another thread calls a function soon on the current event loop."""
    native: Any = anyio.lowlevel.current_token().native_token
    # asyncio's loop, or trio's token.
    call_soon = getattr(native, "call_soon_threadsafe", None)
    if call_soon is None:
        call_soon = native.run_sync_soon
    return cast("Callable[[Callable[[], object]], object]", call_soon)


def join_threads(threads: list[threading.Thread], timeout: float | None = None) -> None:
    """Wait for threads :meth:`StoreThreads.stop` returned (blocking)."""
    for thread in threads:
        thread.join(timeout)
