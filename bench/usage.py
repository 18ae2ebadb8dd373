"""What a run cost its process beyond time: bytes handed to ``write()`` and peak RSS."""

from __future__ import annotations

import resource
import sys


def written_bytes() -> int:
    """Bytes this process has passed to ``write()`` and similar calls so far (Linux's
    ``wchar``; 0 where ``/proc/self/io`` does not exist). For SQLite that is what goes to
    the WAL and the database file, whether or not it reached the disk yet."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            for line in io:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
