"""Seconds and peak resident memory of one call, for the benchmarks' memory columns. Standard library only:
it is also imported by helper scripts that run in another environment (llmc_gptq.py, with llm-compressor's
python), as a sibling module.

The peak is the resident set sampled every 5 ms above its level at the start, after a garbage collection and
`malloc_trim` (so a call does not reuse the pages a previous one freed and show no peak): a lower bound of
what the call needed on top of what was already there."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["measured", "resident_bytes"]


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim() -> None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def measured(call: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, seconds, peak resident bytes above the start) of `call()`."""
    gc.collect()
    _trim()
    start, peak, done = resident_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    clock = time.perf_counter()
    try:
        result = call()
    finally:
        seconds = time.perf_counter() - clock
        done.set()
        thread.join()
    return result, seconds, max(peak[0], resident_bytes()) - start
