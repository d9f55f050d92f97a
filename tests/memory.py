"""The memory of the current process, for the scripts that measure a child process's own peak
(tests of bounded memory, the log benchmark)."""

from __future__ import annotations

import resource
import sys


def memory_kb(field: str) -> int:
    """This process's `VmRSS` (now) or `VmHWM` (its peak) in KiB.

    Not `ru_maxrss` where /proc exists: on Linux a child's ru_maxrss also counts its parent's
    peak (the high-water mark survives the fork/exec that started it). Elsewhere it is all there
    is, for both fields."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
