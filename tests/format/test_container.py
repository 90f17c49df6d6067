"""The .bin container: exact round trips of every record kind, stream statistics, and a byte fixture."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
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


def test_lenient_inputs_are_normalized() -> None:
    """2-D values, int32 positions and indices: stored flattened / as int64, same reconstruction."""
    recs = [
        TensorRecord("v2d", (3, 4), torch.float32, values=torch.arange(12.0).reshape(3, 4)),
        TensorRecord(
            "p32",
            (10,),
            torch.float16,
            positions=torch.tensor([1, 4, 9], dtype=torch.int32),
            codebook=torch.tensor([0.5, -1.0]),
            indices=torch.tensor([1, 0, 1], dtype=torch.int32),
        ),
        TensorRecord(
            "t", (4, 3), torch.float32, values=torch.arange(12.0).reshape(3, 4).t()
        ),  # non-contiguous
    ]
    out, _ = decode_records(encode_records(recs).data)
    for a, b in zip(recs, out, strict=True):
        assert_same(a, b)
    assert out[1].positions.dtype == torch.int64 and out[1].indices.dtype == torch.int64


def test_stats_with_numpy_and_tensor_values_are_stored() -> None:
    rec = make_record("a", (2,), torch.float32, "dense")
    rec.stats = {"ratio": np.float32(2.5), "kept": torch.tensor(3), "dims": (1, 2), "v": np.arange(2)}
    (out,), _ = decode_records(encode_records([rec]).data)
    assert out.stats == {"ratio": 2.5, "kept": 3, "dims": [1, 2], "v": [0, 1]}


# Exact-byte fixture: if this changes, the file format changed: bump VERSION, update docs/format.md.
FIXTURE_HEX = (
    "4d43534201000000f20100009f01000000000000e450d50178dab595e1929b201485dfe5fe2db32368acf55576763218"
    "7065a2e02a6e9a667cf72215825b93d69dec3f10cfe59e2fc79b0b345c53463585fc028d62bc861c4af1530f1d871181"
    "e6b2575d0ff9f305246db83965e61107047d455bb37f26287e41c0f479da41592baa6362ce4de54ab140c0e54131215f"
    "cda36a28cb86caa98aa6da94bf8cd3b2e3b49936f04eeb81db9597b4351593e0ef8b5c23a969439525e411829a4bc849"
    "328e23f28db7dd2039db9bd73bce025d82928f06701a1ab0c26f6f03955afcdae8a455bdd042c9a5998e9e8ca2a66735"
    "68b37da56d6ff627c17405796c0a9c9b42d5469320231aa4b62b6b8e24cedd389d315e2875dc488a3852249d8b65a698"
    "904c1cf85aa3d716e616f1ac8f5d33788df41fb1bb345ee4a4b8c57989772ef128b464156decdcecbc1bf43f110c3c78"
    "938e6cecc8a60b32b53a75541e179f0fb9fff95c25776307f625db7ac068d89a0c849d838404d978df5807239fb15de4"
    "eb84240af92487665f507da878bfd71d3d1c179f654045489d265f3f52dc35de84b790ad5a98afdccf19f30ca328baff"
    "933e7ea05c5537929f06c92751e6b36fd7d664ea128bf1ee01a3056778cb6cb17d7c982e38fbe1665dba0ade550dd923"
    "f20ff89fc3fe491cd8ff2911eca64b9adc0072edc10ddc28f250fcfcffeea0e078a2f232fe06e8c97ba40000003f0000"
    "80bf000000400000000000005040000000be1240000080bf0000003f604ec03f00c080400000803f0000004000004040"
    "000080bf0700000000000000d00128030b04000000215c9018864210842108b205403508a09f9f008bd9f339213829de"
    "cf99c909c14ef67cce484e0a77b3e672427053bd9f339213829decf99c909c14ef67cce484e0a77b3e672427053bd9f3"
    "39213829decf99c909c14ef67cce484e0a77b3e672427053bd9f33921382800000803e000000bf666666666666666666"
    "6666666666666666666666666666666666000080bfdedd5dbfbcbb3bbf999919bfeeeeeebeaaaaaabecacc4cbe828888"
    "bd8288883dcacc4c3eaaaaaa3eeeeeee3e9999193fbcbb3b3fdedd5d3f0000803f90030902420e629062088507401009"
    "93abce06f180c000fefffffdfbf7efbefbefbefbef7bdef7bdef7bdef7bdeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeedb6"
    "db6db6db6db6db6db6db6db6db6db6db6db6db6db6db6aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaa0000000000000000000000000000000000000"
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
        TensorRecord(  # Huffman-coded gaps (sparse code table) + raw indices
            "huffman_gaps",
            (2000,),
            torch.float32,
            positions=torch.tensor(
                np.cumsum(np.tile([3, 9, 17, 5, 40, 2, 11, 30, 1, 1, 2, 1, 3, 4, 2, 6], 13))
            ),
            codebook=torch.tensor([0.25, -0.5]),
            indices=torch.tensor(np.tile([0, 1, 1, 0], 52)),
            method="prune+quantize",
        ),
        TensorRecord(  # Huffman-coded indices (dense code table)
            "huffman_indices",
            (20, 20),
            torch.float32,
            codebook=torch.linspace(-1, 1, 16),
            indices=torch.tensor(np.floor(np.log2(np.arange(1, 401))).astype(np.int64)),
            method="quantize",
        ),
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
    assert struct.pack("<q", 7) in payload
    model = encode_records(fixture_records(), {"model": "fixture"})
    codings = {(n, s.kind): s.coding for n, lst in model.streams.items() for s in lst}
    assert codings[("huffman_gaps", "positions")] == "huffman"
    assert codings[("huffman_indices", "indices")] == "huffman"
    records, meta = decode_records(fixture)
    assert meta == {"model": "fixture"}
    for a, b in zip(fixture_records(), records, strict=True):
        assert_same(a, b)
