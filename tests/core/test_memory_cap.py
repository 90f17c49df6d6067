"""`memory_cap`: an allocation past the cap is an error in the code that asked (not the OOM killer), the
process runs on after the block, and `refused_allocation` recognises the error however it was wrapped."""

from __future__ import annotations

import resource

import numpy as np
import pytest
import torch

from compression_core.errors import SpecError
from compression_core.memory_cap import data_segment_bytes, memory_cap, refused_allocation

MIB = 1 << 20


def test_an_allocation_past_the_cap_fails_and_the_limit_comes_back() -> None:
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with memory_cap(64 * MIB) as cap:
        used = data_segment_bytes()
        assert cap is not None and used is not None and used <= cap
        small = torch.ones(4 * MIB, dtype=torch.uint8)  # within the cap
        with pytest.raises(RuntimeError, match="can't allocate memory") as refused_torch:
            torch.empty(256 * MIB, dtype=torch.uint8)
        with pytest.raises(MemoryError) as refused_numpy:
            np.empty(256 * MIB, dtype=np.uint8)
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
    assert refused_allocation(refused_torch.value) and refused_allocation(refused_numpy.value)
    assert int(small.sum()) == 4 * MIB
    big = torch.ones(256 * MIB, dtype=torch.uint8)  # the same request, after the block
    assert int(big[-1]) == 1


def test_no_budget_sets_no_cap() -> None:
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with memory_cap(None) as cap:
        assert cap is None and resource.getrlimit(resource.RLIMIT_DATA) == before


def test_a_refused_allocation_is_recognised_through_the_wrapping() -> None:
    try:
        try:
            raise MemoryError()
        except MemoryError as inner:
            raise SpecError("structured pruning could not trace the model") from inner
    except SpecError as wrapped:
        assert refused_allocation(wrapped)
    assert refused_allocation(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not refused_allocation(SpecError("the spec's keep is larger than the tensor"))
    assert not refused_allocation(ValueError("shape mismatch"))
