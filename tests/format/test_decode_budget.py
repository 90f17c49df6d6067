"""The `.bin` decoder's cap counts bytes, not entries (issue 10, item 2): declared shapes times the dtype's
real width plus the decoder's 8-byte symbols, checked before any stream is decoded."""

from __future__ import annotations

import pytest
import torch

from compression_core.errors import FormatError
from compression_core.format import decode_records
from compression_core.format.layout import DTYPES
from tests.format.test_reader_fuzz import SMALL, build, parts


def declared_bytes(data: bytes) -> int:
    manifest, _ = parts(data)
    entries = manifest["tensors"] if isinstance(manifest, dict) and "tensors" in manifest else manifest
    total = 0
    for entry in entries:
        n = 1
        for size in entry["shape"]:
            n *= size
        total += n * (torch.empty(0, dtype=DTYPES[entry["dtype"]]).element_size() + 8)
    return total


def test_the_budget_counts_each_dtypes_width_exactly() -> None:
    need = declared_bytes(SMALL)
    decode_records(SMALL, max_bytes=need)
    with pytest.raises(FormatError, match=f"needs {need:,} bytes, over the byte budget of {need - 1:,}"):
        decode_records(SMALL, max_bytes=need - 1)


def test_a_tiny_file_declaring_gigabytes_of_float64_is_refused_before_decoding() -> None:
    manifest, payload = parts(SMALL)
    entries = manifest["tensors"] if isinstance(manifest, dict) and "tensors" in manifest else manifest
    entries[0]["shape"], entries[0]["dtype"] = [1 << 28], "float64"  # 2 GiB of output, 4 GiB with symbols
    data = build(manifest, payload)
    assert len(data) < 2000
    with pytest.raises(FormatError, match="over the byte budget"):
        decode_records(data)
