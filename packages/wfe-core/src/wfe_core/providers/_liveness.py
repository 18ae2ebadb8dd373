"""Whether the process holding a lease still runs, where a lock can tell.

A lock provider whose leases outlive the process that took them (a file, a database) may
record where each holder runs (:func:`this_process`). When a key is found held by a process
on this same machine (the host name matches) that no longer exists (:func:`holder_is_gone`), its
lease can be broken at once instead of waiting for it to lapse: the holder was killed
(SIGKILL, a crash, the OOM killer) and will never release it.

Breaking a lease is safe even when the check is wrong (two containers sharing a host name
but not their process ids): fencing stays the guarantee, as for a lease that lapsed. The old
holder's next renewal fails, and its writes are refused once the new holder wrote.
"""

from __future__ import annotations

import os
import socket
import sys

__all__ = ["holder_is_gone", "this_process"]


def this_process() -> tuple[str, int]:
    """The host name and process id a lock records for a lease taken by this process."""
    return socket.gethostname(), os.getpid()


def holder_is_gone(host: str | None, pid: int | None) -> bool:
    """Whether the process ``pid`` on ``host`` provably no longer runs: ``host`` is this
    machine, and no such process exists (or it is a zombie: killed, not reaped yet).
    False whenever that cannot be told (another machine, nothing recorded, Windows)."""
    if host is None or pid is None or pid <= 0:
        return False
    name, own = this_process()
    if host != name or pid == own or sys.platform == "win32":
        # On Windows os.kill(pid, 0) would terminate the process: never ask there.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, as another user's process
    except OSError:
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits for its parent to reap it (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # The state follows the command name, which is in parentheses and may hold any
            # character: read it after the last ")".
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False
