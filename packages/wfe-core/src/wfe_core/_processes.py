"""Step processes that cannot outlive their step, nor the process running them.

Executors that start a child process for a step (wfe-yaml's ``shell`` and ``deno`` steps) put
:func:`new_token` in its environment as :data:`TOKEN_VARIABLE` and call :func:`step_started`
and :func:`step_finished` around it. Then, on Linux:

- when the step ends (exit, timeout, cancellation), every process still carrying its token is
  killed, also those that left the step's process group (``setsid``, a double-forking daemon),
  with their descendants;
- in a process that called :func:`start_watchdog` (``wfe run`` and ``wfe worker`` do), a small
  watchdog process kills the process groups and token-carrying processes of the steps still
  running when this process dies, even by SIGKILL.

What escapes: a process that both hides the token (clears its environment, or makes it
unreadable) and leaves the process tree of the step (double-forks). Hostile code can do that;
only a container or a cgroup contains it. Without ``/proc`` (macOS), only the step's
process group is killed, and the watchdog kills only the process groups.

Internal module: other distributions use it as ``wfe_core.spi.processes``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from wfe_core import _reaper
from wfe_core._reaper import TOKEN_VARIABLE

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "TOKEN_VARIABLE",
    "environment_with_token",
    "new_token",
    "start_watchdog",
    "step_finished",
    "step_started",
    "stop_watchdog",
    "supported",
    "watchdog",
]

logger = logging.getLogger("wfe_core.processes")

_lock = threading.Lock()
_watchdog: subprocess.Popen[bytes] | None = None


def supported() -> bool:
    """Whether leftover processes can be found by their token here (Linux's ``/proc``);
    elsewhere only a step's process group is killed."""
    return _reaper.supported()


def new_token() -> str:
    """A fresh token for one step's processes."""
    return secrets.token_hex(12)


def start_watchdog() -> bool:
    """Start this process's watchdog (once): when this process dies, it kills the steps'
    processes still running. Returns whether one is running.

    It is one Python process (``-I -S``, the stdlib only) in its own session, so that Ctrl+C
    in the terminal or a kill of this process's group does not stop it first; it exits as
    soon as this process exits or calls :func:`stop_watchdog`.
    """
    global _watchdog
    with _lock:
        if _watchdog is not None and _watchdog.poll() is None:
            return True
        try:
            _watchdog = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(_reaper.__file__).resolve())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                bufsize=0,
            )
        except OSError as exc:
            logger.warning("cannot start the step watchdog: %s", exc)
            _watchdog = None
            return False
        assert _watchdog.stdin is not None
        # A watchdog that stops reading (stopped, stuck) must never block a step from starting:
        # a write that would block counts as the watchdog being gone.
        os.set_blocking(_watchdog.stdin.fileno(), False)
        return True


def stop_watchdog() -> None:
    """Stop the watchdog (this process is about to exit with no step running)."""
    global _watchdog
    with _lock:
        watchdog, _watchdog = _watchdog, None
    if watchdog is None:
        return
    if watchdog.stdin is not None:
        watchdog.stdin.close()
    try:
        watchdog.wait(timeout=10)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


@contextlib.contextmanager
def watchdog() -> Iterator[None]:
    """:func:`start_watchdog` for the ``with`` block, :func:`stop_watchdog` after it (how
    ``wfe run`` and ``wfe worker`` use it)."""
    start_watchdog()
    try:
        yield
    finally:
        stop_watchdog()


def _tell_watchdog(line: str) -> None:
    global _watchdog
    with _lock:
        watchdog = _watchdog
        if watchdog is None or watchdog.stdin is None:
            return
        try:
            watchdog.stdin.write(line.encode())
        except OSError:  # it died: nothing protects the steps from this process's death
            logger.warning("the step watchdog exited; steps are not killed if this process dies")
            _watchdog = None


def step_started(pid: int, token: str) -> None:
    """Register a step's process (it leads its own process group and carries ``token``)."""
    _tell_watchdog(f"+{pid} {token}\n")


async def step_finished(pid: int, token: str) -> int:
    """Kill what is left of the step whose process ``pid`` carried ``token``: processes with
    the token (they may have left its process group) and their descendants. Call it after the
    process exited (and its group was killed). Returns how many processes were killed.
    """
    killed = 0
    # The common case (nothing left) is one look at the processes newer than the step.
    if _reaper.supported() and _reaper.leftovers_possible(token, since=pid):
        killed = await anyio.to_thread.run_sync(
            lambda: _reaper.kill_marked((token,), since=pid), abandon_on_cancel=False
        )
        if killed:
            logger.info("killed %d leftover process(es) of a step", killed)
    _tell_watchdog(f"-{pid}\n")
    return killed


def environment_with_token(env: dict[str, str], token: str) -> dict[str, str]:
    """``env`` with the step token set (a step cannot choose its own)."""
    return {**env, TOKEN_VARIABLE: token}
