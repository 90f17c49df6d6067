"""Tensors compressed in parallel, results in input order, bytes independent of the pool size.

A thread pool: the heavy steps (numpy sorts and k-means, Huffman coding, torch kernels) release the GIL,
and threads share the one copy of the process (a process pool would pay an interpreter and a torch import
per worker, and pickle every tensor across). Intra-op threads are pinned to 1 while the pool runs, so
`workers` threads use `workers` cores and no kernel's result depends on how many threads split it: the
output is the same for every pool size. At most `workers + 1` tasks are in flight, which bounds memory to
that many tensors' working sets.

Core budget: a worker machine with C cores running Celery with concurrency P should give each job
`workers = max(1, C // P)` (`default_workers`, or MCS_STREAM_WORKERS): P jobs x workers threads = C cores.
"""

from __future__ import annotations

import ctypes
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def default_workers(concurrency: int = 1) -> int:
    """Cores this process may use divided by the jobs that share them (`MCS_STREAM_WORKERS` overrides)."""
    configured = os.environ.get("MCS_STREAM_WORKERS")
    if configured:
        return max(1, int(configured))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, concurrency))


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them per thread arena otherwise, so a pool of
    threads that each freed one tensor's buffers would look like it still holds them all)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


@contextmanager
def single_threaded_kernels() -> Iterator[None]:
    """torch (and the BLAS behind numpy's matrix products) on one thread each while the pool runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class OrderedPool:
    """`map` that yields results in input order, running up to `workers` calls at once."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._executor = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="mcs-stream") if workers > 1 else None
        )

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        if self._executor is None:
            for item in items:
                yield fn(item)
            return
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(self._executor.submit(fn, item))
                if len(pending) > self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            for future in pending:
                if not future.cancelled():
                    future.exception()  # wait, so no task outlives the call that started it

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> OrderedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
