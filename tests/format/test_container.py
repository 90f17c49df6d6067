"""The .bin container: exact round trips of every record kind, stream statistics, and a byte fixture."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compression_core.errors import FormatError
from compression_core.format import decode_records, decode_state_dict, encode_records
from compression_core.records import TensorRecord
from tests.format.conftest import FLOAT_DTYPES, assert_same, make_record, raw_bytes

KINDS = ["dense", "sparse", "codebook", "sparse_codebook", "lowrank"]


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(0, 12), min_size=0, max_size=3).map(tuple),
    dtype=st.sampled_from(FLOAT_DTYPES),
    kind=st.sampled_from(KINDS),
    density=st.floats(0.0, 1.0),
    k=st.integers(1, 300),
    encoding=st.sampled_from(["huffman", "raw"]),
    seed=st.integers(0, 2**31),
)
def test_roundtrip_is_bit_exact(shape, dtype, kind, density, k, encoding, seed) -> None:
    if kind == "lowrank" and len(shape) == 0:
        shape = (1,)
    rec = make_record("t", shape, dtype, kind, seed=seed, density=density, k=k, encoding=encoding)
    model = encode_records([rec], {"seed": seed})
    out, meta = decode_records(model.data)
    assert meta == {"seed": seed}
    assert len(out) == 1
    assert_same(rec, out[0])
    assert out[0].stats == rec.stats and out[0].method == rec.method


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float64,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    ],
)
def test_dense_dtypes_roundtrip(dtype: torch.dtype) -> None:
    rec = make_record("x", (3, 5), dtype, "dense", seed=1)
    (out,), _ = decode_records(encode_records([rec]).data)
    assert out.values is not None and out.values.dtype == dtype
    assert_same(rec, out)


def test_special_float_values_survive_bit_for_bit() -> None:
    v = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-45, 3.4e38])
    for dtype in FLOAT_DTYPES:
        rec = TensorRecord("s", (6,), dtype, values=v.to(dtype))
        (out,), _ = decode_records(encode_records([rec]).data)
        assert torch.equal(raw_bytes(out.reconstruct()), raw_bytes(rec.reconstruct()))


def test_realistic_model_roundtrip_and_stream_accounting(tmp_path: Path) -> None:
    records = [
        make_record("conv1.weight", (20, 1, 5, 5), torch.float32, "sparse_codebook", density=0.6, k=256),
        make_record("conv1.bias", (20,), torch.float32, "dense"),
        make_record("fc1.weight", (500, 800), torch.float32, "sparse_codebook", density=0.08, k=32, seed=2),
        make_record("fc2.weight", (10, 500), torch.float32, "lowrank", rank=3),
        make_record("fc3.weight", (10, 500), torch.float16, "sparse", density=0.1, encoding="raw"),
        make_record("bn.num_batches_tracked", (), torch.int64, "dense"),
    ]
    model = encode_records(records, {"spec": {"rules": [1, 2]}})
    total = sum(s.bits for lst in model.streams.values() for s in lst) + model.overhead_bits
    assert total == 8 * len(model.data) and model.overhead_bits > 0
    assert list(model.streams) == [r.name for r in records]
    fc1 = {s.kind: s for s in model.streams["fc1.weight"]}
    assert set(fc1) == {"positions", "codebook", "indices", "header"}
    assert fc1["indices"].coding == "huffman" and fc1["indices"].count == records[2].indices.numel()
    assert fc1["positions"].layout == "gaps" and fc1["positions"].entropy_bits <= fc1["positions"].bits
    assert fc1["indices"].entropy_bits <= fc1["indices"].bits <= 1.1 * fc1["indices"].entropy_bits + 800
    assert fc1["codebook"].bits == 32 * 32 and fc1["codebook"].entropy_bits is None
    assert {s.coding for s in model.streams["fc3.weight"] if s.kind == "positions"} == {"raw"}
    path = tmp_path / "model.bin"
    path.write_bytes(model.data)
    for source in (model.data, path, str(path)):
        state = decode_state_dict(source)
        assert list(state) == [r.name for r in records]
        for rec in records:
            assert torch.equal(raw_bytes(state[rec.name]), raw_bytes(rec.reconstruct()))
            assert state[rec.name].dtype == rec.dtype


def test_empty_model_and_empty_tensors() -> None:
    assert decode_records(encode_records([]).data) == ([], {})
    recs = [
        make_record("e1", (0,), torch.float32, "dense"),
        make_record("e2", (0, 4), torch.float32, "sparse"),
        make_record("e3", (5, 0), torch.float32, "sparse_codebook", k=1),
        make_record("z", (100,), torch.float32, "sparse", density=0.0),
        make_record("k1", (50,), torch.float32, "codebook", k=1),
    ]
    out, _ = decode_records(encode_records(recs).data)
    for a, b in zip(recs, out, strict=True):
        assert_same(a, b)


@pytest.mark.parametrize(
    "bad",
    [
        TensorRecord("a", (2, 2), torch.float32),  # nothing stored
        TensorRecord("a", (2, 2), torch.float32, values=torch.zeros(3)),  # count mismatch
        TensorRecord("a", (4,), torch.float32, positions=torch.tensor([2, 1]), values=torch.zeros(2)),
        TensorRecord("a", (4,), torch.float32, positions=torch.tensor([1, 4]), values=torch.zeros(2)),
        TensorRecord("a", (4,), torch.float32, codebook=torch.zeros(2), indices=torch.tensor([0, 1, 2, 0])),
        TensorRecord("a", (4,), torch.float32, factors=(torch.zeros(2, 1), torch.zeros(1, 3))),
        TensorRecord("a", (2,), torch.complex64, values=torch.zeros(2, dtype=torch.complex64)),
        TensorRecord("a", (2,), torch.float32, values=torch.zeros(2), encoding="zstd"),
    ],
)
def test_encoder_refuses_inconsistent_records(bad: TensorRecord) -> None:
    with pytest.raises(FormatError):
        encode_records([bad])


def test_encoder_refuses_duplicate_names_and_unserializable_metadata() -> None:
    rec = make_record("a", (2,), torch.float32, "dense")
    with pytest.raises(FormatError, match="unique"):
        encode_records([rec, rec])
    with pytest.raises(FormatError):
        encode_records([rec], {"x": float})


def test_stats_with_numpy_and_tensor_scalars_are_stored() -> None:
    import numpy as np

    rec = make_record("a", (2,), torch.float32, "dense")
    rec.stats = {"ratio": np.float32(2.5), "kept": torch.tensor(3), "dims": (1, 2)}
    (out,), _ = decode_records(encode_records([rec]).data)
    assert out.stats == {"ratio": 2.5, "kept": 3, "dims": [1, 2]}


# Exact-byte fixture: if this changes, the file format changed: bump VERSION, update docs/format.md.
FIXTURE_HEX = (
    "4d435342010000008e0100004200000000000000712e6f2b78dab554d16e832014fd97fb3ab254b4a6f1579aa5b90a56"
    "5205a7d0ae33fefbd089c5ad6b66b2bd718173ee3927173aa8b846861a21e9a0528c9790402edeb46938f4043497ad6a"
    "5a48f61d48acb83d65768b0381b6c0dad67b4ac217024c5f870af252a10ea93db7cc85621e80cb4c31218f76ab30795e"
    "a11c58346a4bdff5c3b2e1580d059cb1347c5ccd90ba443100be377242622b43e539241b02259790d0a8ef7b320baf1b"
    "23393bd8eb0d671e2e22d1570341ec1b18814faf06a516ef2b9dd4aa155a28b934d3e0c5224abc2aa36d79c4bab5f545"
    "305d40125a826b95aad26222624146ea71359aa39173d70f678ca74a9d5626455d52349ec876964c4826327e4fe84dc2"
    "243198f0a11313dc4bfa13ec9a868b39497fca7919ef44f157d1d2bbd186cecd7676437e33829e87d9a44b3674c9c68b"
    "644a7569509e16cf873e7e3e37c8c3b183f1d228ddcbc8ac9d0c12380711f566e3bc922720f38c6d37338f9f442a9fa5"
    "a90e29eaace0ed4137989d16cfd24b45481d47ffffa5b836b389d9c2ceb3f0d27f006385abc60000003f000080bf0000"
    "00400000000000005040000000be1240000080bf0000003f604ec03f00c080400000803f0000004000004040000080bf"
    "0700000000000000"
)


def fixture_records() -> list[TensorRecord]:
    return [
        TensorRecord(
            "dense", (2, 3), torch.float32, values=torch.tensor([0.5, -1.0, 2.0, 0.0, 3.25, -0.125])
        ),
        TensorRecord(
            "pruned_shared",
            (4, 4),
            torch.float16,
            positions=torch.tensor([0, 5, 10, 15]),
            codebook=torch.tensor([-1.0, 0.5]),
            indices=torch.tensor([0, 1, 1, 0]),
            method="prune+quantize",
        ),
        TensorRecord(
            "pruned_raw",
            (3, 3),
            torch.bfloat16,
            positions=torch.tensor([1, 2, 8]),
            values=torch.tensor([1.5, -2.0, 4.0], dtype=torch.bfloat16),
            encoding="raw",
            method="prune",
        ),
        TensorRecord(
            "lowrank",
            (2, 2),
            torch.float32,
            factors=(torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0, -1.0]])),
            method="lowrank",
            stats={"rank": 1},
        ),
        TensorRecord("bn.num_batches_tracked", (), torch.int64, values=torch.tensor([7])),
    ]


def split(data: bytes) -> tuple[bytes, int, int, str, bytes]:
    """(magic, version, flags, manifest JSON, payload): the parts that do not depend on zlib's build."""
    version, flags, mlen, plen, _ = struct.unpack("<HHIQI", data[4:24])
    return data[:4], version, flags, zlib.decompress(data[24 : 24 + mlen]).decode(), data[24 + mlen :]


def test_exact_byte_fixture() -> None:
    fixture = bytes.fromhex(FIXTURE_HEX)
    data = encode_records(fixture_records(), {"model": "fixture"}).data
    assert split(data) == split(fixture)
    magic, version, flags, manifest, payload = split(fixture)
    assert (magic, version, flags) == (b"MCSB", 1, 0)
    assert json.loads(manifest)["metadata"] == {"model": "fixture"}
    assert payload[:24] == struct.pack("<6f", 0.5, -1.0, 2.0, 0.0, 3.25, -0.125)
    assert payload.endswith(struct.pack("<q", 7))
    records, meta = decode_records(fixture)
    assert meta == {"model": "fixture"}
    for a, b in zip(fixture_records(), records, strict=True):
        assert_same(a, b)
