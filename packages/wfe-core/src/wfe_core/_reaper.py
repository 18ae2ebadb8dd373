"""Finding and killing what a step's process left running (Linux ``/proc``; stdlib only).

Every process a step starts carries the step's token in its environment
(:data:`TOKEN_VARIABLE`), inherited by everything it starts in turn, including processes that
``setsid`` or double-fork out of the step's process group. :func:`kill_marked` finds them
(and their descendants, even ones that replaced their environment) and SIGKILLs them.

This file is also the runner's watchdog (``python -I -S _reaper.py``, see
:mod:`wfe_core._processes`): it reads ``+PID TOKEN`` / ``-PID`` lines on stdin for the step
processes alive in the runner, and when stdin ends because the runner died (even by SIGKILL),
it kills what is left of those steps. It must therefore import nothing outside the stdlib.
"""

from __future__ import annotations

import os
import sys
import time

# Not from typing, and no `signal` module (it imports enum): the watchdog starts with each
# `wfe run`, and those imports would take most of its start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

#: The environment variable carrying a step's token into its processes.
TOKEN_VARIABLE = "WFE_STEP_TOKEN"

_PROC = "/proc"
#: SIGKILL's number, the same on every POSIX system.
_SIGKILL = 9
#: Rounds of "find, kill" before giving up on processes that keep forking faster than we kill.
_MAX_ROUNDS = 200


_supported: list[bool] = []


def supported() -> bool:
    """Whether processes can be found by token here (a Linux ``/proc``)."""
    if not _supported:
        _supported.append(os.path.isfile(f"{_PROC}/loadavg") and os.path.isdir(f"{_PROC}/self"))
    return _supported[0]


def last_pid() -> int | None:
    """The pid most recently handed out in this pid namespace (``/proc/loadavg``)."""
    try:
        with open(f"{_PROC}/loadavg", "rb") as file:
            return int(file.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _pids_since(first: int | None) -> Iterable[int]:
    """Pids of live processes, only those handed out after ``first`` when given (pids grow until
    they wrap around, so a step's descendants are found without reading every process)."""
    try:
        names = os.listdir(_PROC)
    except OSError:
        return
    # Read after the listing, so that no listed process is newer than ``newest``.
    newest = last_pid() if first is not None else None
    for name in names:
        if not name.isdigit():
            continue
        pid = int(name)
        if first is None or newest is None:
            yield pid
        elif first <= newest:
            if first <= pid <= newest:
                yield pid
        elif pid >= first or pid <= newest:  # the counter wrapped around since ``first``
            yield pid


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of ``pid``, or ``None`` when it is gone."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode(), int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None


#: What :func:`_token` returns for an empty environment: a process in the middle of ``execve``
#: reads as one for a moment (the new program's environment is not set up yet), so whether it
#: carries a token is not known yet; a process started with ``env -i`` reads so for good.
_UNSETTLED = ""
#: How long a scan that saw such processes looks again before it takes them as not ours.
SETTLE_SECONDS = 0.5


def _token(pid: int) -> str | None:
    """The step token in ``pid``'s environment (``None``: none, gone, or not ours to read;
    :data:`_UNSETTLED`: the environment reads empty)."""
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as file:
            environ = file.read()
    except OSError:
        return None
    if not environ:
        return _UNSETTLED
    key = TOKEN_VARIABLE.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(key):
            return entry[len(key) :].decode(errors="replace")
    return None


def _scan(
    tokens: Collection[str], groups: Collection[int], since: int | None
) -> tuple[list[int], bool]:
    """One look at the processes: those :func:`find_marked` finds, and whether some other
    process's environment read empty (see :data:`_UNSETTLED`)."""
    me = os.getpid()
    found: set[int] = set()
    unsettled: set[int] = set()
    parents: dict[int, int] = {}
    for pid in _pids_since(since):
        if pid == me:
            continue
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue  # gone, or dead and waiting for its parent to reap it
        _state, ppid, pgid = stat
        parents[pid] = ppid
        if pgid in groups:
            found.add(pid)
            continue
        token = _token(pid)
        if token in tokens:
            found.add(pid)
        elif token == _UNSETTLED and ppid not in (0, 2):  # kernel threads have no environment
            unsettled.add(pid)
    # Descendants of what was found, through parents found in the same pass.
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if pid not in found and ppid in found:
                found.add(pid)
                grew = True
    return sorted(found), bool(unsettled - found)


def find_marked(
    tokens: Collection[str],
    *,
    groups: Collection[int] = (),
    since: int | None = None,
    settle_until: float | None = None,
) -> list[int]:
    """Live processes carrying one of ``tokens``, in one of the process ``groups``, or
    descending from one of those (a child that cleared its environment is still found while
    its parent lives). ``since``: only look at pids handed out from then on.

    ``settle_until`` (a :func:`time.monotonic` deadline): while some process's environment
    reads empty, as it does in the middle of ``execve``, look again until that deadline, so a
    leftover caught between two programs (``setsid`` becoming ``sleep``) is not missed.
    """
    while True:
        found, unsettled = _scan(tokens, groups, since)
        if not unsettled or settle_until is None or time.monotonic() >= settle_until:
            return found
        time.sleep(0.002)


def leftovers_possible(token: str, *, since: int) -> bool:
    """Whether a step's token may have processes left (one quick look, for the common case of
    none): some carry it, or some process was caught in the middle of ``execve``."""
    found, unsettled = _scan((token,), (), since)
    return bool(found) or unsettled


def kill_marked(
    tokens: Collection[str],
    *,
    groups: Collection[int] = (),
    since: int | None = None,
    settle: float = SETTLE_SECONDS,
) -> int:
    """SIGKILL every process :func:`find_marked` finds, again until none is left (a process
    may fork while it is being killed). Processes caught in the middle of ``execve`` are
    looked at again for up to ``settle`` seconds in all. Returns how many were killed."""
    if not tokens and not groups:
        return 0
    killed: set[int] = set()
    settle_until = time.monotonic() + settle
    for _ in range(_MAX_ROUNDS):
        pids = find_marked(tokens, groups=groups, since=since, settle_until=settle_until)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, _SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            killed.add(pid)
        # SIGKILL is delivered asynchronously: give the victims a moment to die before looking
        # again (dead ones are zombies, which are skipped).
        time.sleep(0.001)
    return len(killed)


def _watch(stdin: Iterable[bytes]) -> None:
    """The watchdog's loop: track the runner's step processes until stdin ends, then kill them."""
    alive: dict[int, str] = {}
    for raw in stdin:
        line = raw.decode(errors="replace").strip()
        try:
            if line.startswith("+"):
                number, _, token = line[1:].partition(" ")
                alive[int(number)] = token
            elif line.startswith("-"):
                alive.pop(int(line[1:]), None)
        except ValueError:
            continue
    if not alive:
        return  # the runner ended its steps itself
    for pid in alive:
        # Each step's process leads its own process group.
        try:
            os.killpg(pid, _SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
    if supported():
        kill_marked(set(alive.values()), groups=set(alive))


if __name__ == "__main__":
    # Started in a session of its own, with no terminal: Ctrl+C and hang-ups do not reach it.
    _watch(sys.stdin.buffer)
