"""A cap on what one piece of work may allocate in this process, so that running out is an error, not a kill.

Past the machine's memory the kernel's OOM killer ends the whole process: a worker child dies, its job is
delivered again, dies again, and after `MCS_MAX_ATTEMPTS` ends failed with "its worker was lost". Under
`memory_cap(n)` the process's data segment (RLIMIT_DATA, the soft limit: it counts every anonymous mapping,
so every tensor and array) may grow by `n` bytes; an allocation past that fails at once in the code that
asked for it (Python's MemoryError, numpy's, torch's `DefaultCPUAllocator: can't allocate memory`) and
`refused_allocation` recognises it, however the code that caught it wrapped it. Linux only (RLIMIT_DATA
counts mmap'd memory there since 4.7); elsewhere the cap is not set.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["data_segment_bytes", "memory_cap", "refused_allocation"]

_REFUSED = ("can't allocate memory", "cannot allocate memory", "out of memory", "not enough memory")


def data_segment_bytes() -> int | None:
    """This process's data segment now (VmData), or None where /proc does not say."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    return None


@contextmanager
def memory_cap(budget: int | None) -> Iterator[int | None]:
    """Let the data segment grow by at most `budget` bytes inside the block (None: no cap); yields the
    absolute cap set. The previous soft limit comes back on exit, so the process runs on afterwards."""
    if budget is None or (used := data_segment_bytes()) is None:
        yield None
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = used + budget if hard == resource.RLIM_INFINITY else min(used + budget, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    try:
        yield cap
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def refused_allocation(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is an allocation the system refused."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError):
            return True
        text = str(current).lower()
        if any(marker in text for marker in _REFUSED):
            return True
        current = current.__cause__ or current.__context__
    return False
