"""Threads of a store's own: where its blocking SQLite calls run.

A call through ``anyio.to_thread.run_sync`` costs the event loop about 60 µs of CPU (a
capacity limiter, a cancel scope, a future and a task wake-up each way); a thread of the
store's own, fed through a :class:`queue.SimpleQueue` and resolving a future of the loop
(an anyio event on other backends), about 17-20 µs. Every write and every read group of a
store makes one such call, so they go to a :class:`StoreThreads`: the writer has one
thread (its transactions run one at a time anyway), the readers one per reader connection.

On Linux the threads wake an asyncio loop through an eventfd of their own (see
:class:`_Answers`) rather than its ``call_soon_threadsafe``: one syscall on each side where
the loop's self-pipe costs a handle, a send, and two reads (the second one failing), about
a twentieth of a loop's round on SQLite.

The threads are daemons started on first use and stopped by :meth:`StoreThreads.stop`
(the store's close): the jobs handed over before it still run to the end, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.lowlevel

from wfe_core.errors import ProviderError

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("wfe_sqlite.engine")

A = TypeVar("A")


class _Job(Generic[A]):
    __slots__ = ("answer", "answered", "arg", "error", "fn", "future")

    def __init__(self, fn: Callable[[A], None], arg: A) -> None:
        self.fn = fn
        self.arg = arg
        #: Wakes the waiting caller (called in the thread with the job once ``fn``
        #: returned). Never a callable holding the job: that cycle would keep each job, and
        #: all its ``arg`` holds, until the garbage collector runs.
        self.answer: Callable[[_Job[A]], object] = _no_answer
        #: What ``fn`` raised (it should record its own failures in ``arg`` instead).
        self.error: BaseException | None = None
        #: On asyncio: the future the caller waits for now (see ``_answered``).
        self.future: asyncio.Future[None] | None = None
        #: The answer reached the event loop (``fn`` returned).
        self.answered = False


def _no_answer(job: _Job[Any]) -> None:
    return None


class StoreThreads:
    """Up to ``size`` threads running the jobs handed to :meth:`run`, in the order handed.

    Used from one event loop (the store's); the threads answer it through its token.
    """

    def __init__(self, name: str, size: int, where: str) -> None:
        self.name = name
        self.size = size
        self.where = where
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Jobs handed over and not answered yet (touched on the event loop only): a new
        # thread starts when there are more than threads, up to ``size``.
        self._pending = 0
        self._stopped = False
        # On an asyncio loop the answer resolves a future of the loop (cheaper for it than an
        # anyio event); on another backend, an event set through its loop's call-soon.
        self._call_soon: Callable[[Callable[[], object]], object] | None = None
        #: The eventfd wake-up of the asyncio loop last used (see :class:`_Answers`), and
        #: those of the loops before it: closed only once the threads ended, since a job
        #: handed over from an earlier loop may still answer (to a closed eventfd, whose
        #: number could by then be another file's).
        self._answers: _Answers | None = None
        self._earlier_answers: list[_Answers] = []
        self._answers_loop: asyncio.AbstractEventLoop | None = None

    async def run(self, fn: Callable[[A], None], arg: A, *, to_the_end: bool = False) -> None:
        """Run ``fn(arg)`` in one of the threads and wait until it has returned.

        ``fn`` records its results and failures in ``arg``; an exception it lets through is
        raised here. Once handed over, the job runs to the end even when this call is
        cancelled. ``to_the_end``: a cancellation that comes while the job runs is raised
        only once it has returned (for a caller others wait for: the leader of a group
        commit). That costs a shielded wait only when it happens, where a shield around
        every call would cost about as much as the hand-over itself.
        """
        if self._stopped:
            raise ProviderError(f"{self.where} is closed")
        try:
            # The running loop, not one remembered: a store may outlive one event loop and be
            # used from the next (a test fixture, two ``anyio.run`` calls).
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
            native: Any = anyio.lowlevel.current_token().native_token  # trio's token
            self._call_soon = native.run_sync_soon
        self._pending += 1
        if self._pending > len(self._threads) < self.size:
            self._start_thread()
        job = _Job(fn, arg)
        try:
            if loop is not None:
                job.future = loop.create_future()
                answers = self._answers
                if self._answers_loop is not loop:
                    answers = self._answers_for(loop)
                job.answer = partial(_answer_soon, loop) if answers is None else answers.answer
                self._queue.put(job)
                try:
                    await job.future
                except BaseException:
                    if not to_the_end or job.answered:
                        raise
                    # Cancelled (the future with it): wait on a new one, shielded.
                    job.future = loop.create_future()
                    with anyio.CancelScope(shield=True):
                        await job.future
                    raise
            else:
                assert self._call_soon is not None
                done = anyio.Event()
                job.answer = partial(_set_soon, self._call_soon, done)
                self._queue.put(job)
                try:
                    await done.wait()
                except BaseException:
                    if not to_the_end:
                        raise
                    with anyio.CancelScope(shield=True):
                        await done.wait()
                    raise
        finally:
            self._pending -= 1
        if job.error is not None:
            raise job.error

    def _answers_for(self, loop: asyncio.AbstractEventLoop) -> _Answers | None:
        """The eventfd wake-up of ``loop``, made now (``None`` where there is none: not
        Linux, or a loop without ``add_reader``)."""
        if self._answers is not None:
            self._earlier_answers.append(self._answers)
        self._answers = _Answers.open(loop)
        self._answers_loop = loop
        return self._answers

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
            try:
                job.answer(job)
            except RuntimeError:
                # The event loop is closed: nobody is waiting for the answer any more.
                logger.debug(
                    "%s: the event loop closed before a %s job's answer", self.where, self.name
                )

    def stop(self) -> list[threading.Thread]:
        """Hand over no more jobs; the threads end after the jobs handed over so far.

        Call on the event loop; returns the threads, to join outside it, then call
        :meth:`close` (on the loop: the jobs still running answer through it).
        """
        self._stopped = True
        for _ in self._threads:
            self._queue.put(None)
        return list(self._threads)

    def close(self) -> None:
        """Free the loops' wake-ups, once the threads :meth:`stop` returned have ended."""
        answers = self._earlier_answers
        if self._answers is not None:
            answers.append(self._answers)
        self._answers = self._answers_loop = None
        self._earlier_answers = []
        for each in answers:
            each.close()


class _Answers:
    """Answers of jobs to one asyncio loop: the thread appends the job and writes an eventfd
    the loop reads (``add_reader``); the loop then resolves the futures of every job
    appended. Safe without a lock: ``deque.append`` and ``popleft`` are atomic, and a job
    appended after a drain's read is still drained, then or at the next wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.done: deque[_Job[Any]] = deque()

    @classmethod
    def open(cls, loop: asyncio.AbstractEventLoop) -> _Answers | None:
        """Watch a new eventfd on ``loop``; ``None`` where that is not possible."""
        eventfd = getattr(os, "eventfd", None)
        if eventfd is None:
            return None
        fd = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        answers = cls(loop, fd)
        try:
            loop.add_reader(fd, answers.drain)
        except NotImplementedError:  # a loop without readers (Windows' proactor)
            os.close(fd)
            return None
        return answers

    def answer(self, job: _Job[Any]) -> None:
        # In the job's thread (the eventfd is open: it is closed once the threads ended).
        self.done.append(job)
        os.eventfd_write(self.fd, 1)

    def drain(self) -> None:
        # On the loop.
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)
        done = self.done
        while done:
            _answered(done.popleft())

    def close(self) -> None:
        """Stop watching the eventfd and close it (on its loop, or once that is closed)."""
        if not self.loop.is_closed():
            self.loop.remove_reader(self.fd)
        os.close(self.fd)


def _answer_soon(loop: asyncio.AbstractEventLoop, job: _Job[Any]) -> None:
    # In the job's thread, on an asyncio loop without an eventfd wake-up.
    loop.call_soon_threadsafe(_answered, job)


def _set_soon(
    call_soon: Callable[[Callable[[], object]], object], done: anyio.Event, job: _Job[Any]
) -> None:
    # In the job's thread, on a backend other than asyncio.
    call_soon(done.set)


def _answered(job: _Job[Any]) -> None:
    # On the event loop (so ``job.future`` is the one its caller waits for now).
    job.answered = True
    future = job.future
    # Cancelled meanwhile (a caller that does not wait to the end): nobody wants the answer.
    if future is not None and not future.done():
        future.set_result(None)


def join_threads(threads: list[threading.Thread], timeout: float | None = None) -> None:
    """Wait for threads :meth:`StoreThreads.stop` returned (blocking)."""
    for thread in threads:
        thread.join(timeout)
