"""A hostile or damaged .bin must only ever raise FormatError, quickly and with bounded memory."""

from __future__ import annotations

import contextlib
import json
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compression_core.coding import huffman
from compression_core.errors import FormatError
from compression_core.format import decode_records, decode_state_dict, encode_records
from tests.format.conftest import make_record
from tests.format.test_container import FIXTURE_HEX

FIXTURE = bytes.fromhex(FIXTURE_HEX)


def small_model() -> bytes:
    recs = [
        make_record("a", (40, 30), torch.float32, "sparse_codebook", density=0.2, k=8),
        make_record("b", (20,), torch.float16, "dense"),
        make_record("c", (6, 10), torch.float32, "lowrank"),
        make_record("d", (300,), torch.float32, "sparse", density=0.7),
    ]
    return encode_records(recs, {"m": [1, 2]}).data


SMALL = small_model()


def parts(data: bytes) -> tuple[dict, bytes]:
    _, _, mlen, _, _ = struct.unpack("<HHIQI", data[4:24])
    return json.loads(zlib.decompress(data[24 : 24 + mlen])), data[24 + mlen :]


def build(manifest: Any, payload: bytes, *, raw_manifest: bytes | None = None, version: int = 1) -> bytes:
    """A file with a valid checksum around any manifest: tests the checks behind the CRC."""
    m = raw_manifest if raw_manifest is not None else zlib.compress(json.dumps(manifest).encode())
    body = m + payload
    return b"MCSB" + struct.pack("<HHIQI", version, 0, len(m), len(payload), zlib.crc32(body)) + body


def decode_fully(data: bytes) -> None:
    decode_state_dict(data, max_elements=1 << 22)


def test_every_truncation_fails_cleanly() -> None:
    for cut in range(len(FIXTURE)):
        with pytest.raises(FormatError):
            decode_fully(FIXTURE[:cut])
    with pytest.raises(FormatError):
        decode_fully(FIXTURE + b"\0")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1, max_size=4))
def test_bit_flips_are_caught_by_the_checksum(flips: list[tuple[int, int]]) -> None:
    bad = bytearray(SMALL)
    for pos, bit in flips:
        bad[pos % len(bad)] ^= 1 << bit
    if bytes(bad) == SMALL:
        return
    with pytest.raises(FormatError):
        decode_fully(bytes(bad))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1, max_size=3))
def test_payload_flips_behind_a_valid_checksum_fail_cleanly_or_decode(flips: list[tuple[int, int]]) -> None:
    manifest, payload = parts(SMALL)
    bad = bytearray(payload)
    for pos, bit in flips:
        bad[pos % len(bad)] ^= 1 << bit
    try:
        state = decode_state_dict(build(manifest, bytes(bad)), max_elements=1 << 22)
    except FormatError:
        return
    assert set(state) == {"a", "b", "c", "d"}  # a flipped weight is still a valid file


def mutate_json(obj: Any, rng: np.random.Generator) -> Any:
    """Replace one random leaf or container of a JSON document with a hostile value."""
    hostile = [-1, 2**62, 2**64, 10**30, 1.5, "x", None, True, [], {}, [2**31] * 3, "float128", 0]
    if isinstance(obj, dict) and obj and rng.random() < 0.8:
        key = list(obj)[int(rng.integers(len(obj)))]
        return {**obj, key: mutate_json(obj[key], rng)}
    if isinstance(obj, list) and obj and rng.random() < 0.8:
        i = int(rng.integers(len(obj)))
        return obj[:i] + [mutate_json(obj[i], rng)] + obj[i + 1 :]
    return hostile[int(rng.integers(len(hostile)))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_hostile_manifest_values_fail_cleanly(seed: int) -> None:
    manifest, payload = parts(SMALL)
    bad = mutate_json(manifest, np.random.default_rng(seed))
    try:
        decode_fully(build(bad, payload))
    except FormatError:
        return
    # some mutations are harmless (metadata, stats, method labels); the file must then still decode


def with_stream(edit: Callable[[dict], None]) -> bytes:
    manifest, payload = parts(SMALL)
    edit(manifest)
    return build(manifest, payload)


def entry(m: dict, name: str) -> dict:
    return next(e for e in m["tensors"] if e["name"] == name)


HOSTILE = {
    "huge shape": lambda m: entry(m, "a").update(shape=[2**40, 2**40]),
    "shape too long": lambda m: entry(m, "b").update(shape=[1] * 100),
    "negative dim": lambda m: entry(m, "b").update(shape=[-20]),
    "bad dtype": lambda m: entry(m, "b").update(dtype="object"),
    "bad values dtype": lambda m: entry(m, "b")["streams"]["values"].update(dtype="complex64"),
    "huge count": lambda m: entry(m, "a")["streams"]["indices"].update(count=2**60),
    "count off by one": lambda m: entry(m, "a")["streams"]["positions"].update(
        count=1 + entry(m, "a")["streams"]["positions"]["count"]
    ),
    "offset past end": lambda m: entry(m, "b")["streams"]["values"].update(off=2**40),
    "length past end": lambda m: entry(m, "d")["streams"]["values"].update(len=2**40),
    "unknown role": lambda m: entry(m, "b")["streams"].update(extra={}),
    "unknown coding": lambda m: entry(m, "a")["streams"]["indices"].update(coding="arith"),
    "unknown layout": lambda m: entry(m, "a")["streams"]["positions"].update(layout="runs"),
    "wrong width": lambda m: entry(m, "a")["streams"]["indices"].update(width=9),
    "factor mismatch": lambda m: entry(m, "c")["streams"]["u"].update(shape=[5, 3]),
    "unknown key": lambda m: m.update(extra=1),
    "tensors not a list": lambda m: m.update(tensors={}),
    "duplicate name": lambda m: entry(m, "d").update(name="b"),
    "missing values": lambda m: entry(m, "b")["streams"].pop("values"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_named_hostile_manifests(case: str) -> None:
    data = with_stream(HOSTILE[case])
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            decode_records(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_json_and_zlib_bombs() -> None:
    _, payload = parts(SMALL)
    deep = zlib.compress(b"[" * 1_000_000 + b"]" * 1_000_000)
    with pytest.raises(FormatError):
        decode_records(build(None, payload, raw_manifest=deep))
    bomb = zlib.compress(b" " * (64 << 20))  # 64 MiB of spaces in ~64 KiB
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="cap"):
            decode_records(build(None, payload, raw_manifest=bomb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20
    for junk in (
        b"not zlib",
        zlib.compress(b"\xff\xfe"),
        zlib.compress(b"[1,2]"),
        zlib.compress(b"1" * 5000),
    ):
        with pytest.raises(FormatError):
            decode_records(build(None, payload, raw_manifest=junk))


def test_header_checks() -> None:
    manifest, payload = parts(SMALL)
    with pytest.raises(FormatError, match="version"):
        decode_records(build(manifest, payload, version=3))
    with pytest.raises(FormatError, match="magic"):
        decode_records(b"PK\x03\x04" + SMALL[4:])
    with pytest.raises(FormatError, match="bytes"):
        decode_records(SMALL[:-1])
    with pytest.raises(FormatError):
        decode_state_dict(b"")


def test_element_cap_applies_before_decoding() -> None:
    rec = make_record("z", (1 << 20,), torch.float32, "sparse", density=0.0)
    data = encode_records([rec]).data
    assert decode_records(data)[0][0].positions.numel() == 0
    with pytest.raises(FormatError, match="entries"):
        decode_records(data, max_elements=1000)


def forged_indices(edit: Callable[[bytearray], None]) -> bytes:
    """A model whose Huffman index stream is edited behind a refreshed checksum."""
    rec = make_record("h", (4000,), torch.float32, "codebook", k=16)
    manifest, payload = parts(encode_records([rec]).data)
    desc = manifest["tensors"][0]["streams"]["indices"]
    assert desc["coding"] == "huffman"
    stream = bytearray(payload[desc["off"] : desc["off"] + desc["len"]])
    edit(stream)
    new_payload = payload[: desc["off"]] + bytes(stream) + payload[desc["off"] + desc["len"] :]
    desc["len"] = len(stream)
    return build(manifest, new_payload)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.__setitem__(slice(3, 13), b"\xff" * 10),  # table: lengths of 31 bits
        lambda s: s.__setitem__(slice(3, 13), b"\x00" * 10),  # table: no coded symbols
        lambda s: s.__setitem__(slice(0, 2), b"\xff\xff"),  # count: over-long / wrong varint
        lambda s: s.__setitem__(slice(-40, None), b"\x00" * 40),  # zeroed code bits: sync points miss
        lambda s: s.__delitem__(slice(-3, None)),  # stream shorter than its bit count
        lambda s: s.extend(b"\0"),  # trailing byte
    ],
)
def test_forged_index_streams(edit: Callable[[bytearray], None]) -> None:
    with pytest.raises(FormatError):
        decode_fully(forged_indices(edit))


VALID_STREAMS = [
    huffman.encode(np.random.default_rng(1).integers(0, 16, 3000)),
    huffman.encode(np.tile(np.array([0, 70_000, 3, 3]), 500)),  # sparse table
    huffman.encode(np.full(100, 9)),  # single symbol
    huffman.encode(np.zeros(0, dtype=np.int64)),  # empty
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(VALID_STREAMS))),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 10**6),
)
def test_mutated_huffman_streams_only_raise_format_error(which: int, edits: list, cut: int) -> None:
    data = bytearray(VALID_STREAMS[which])
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    data = data[: cut % (len(data) + 1)] if cut % 3 == 0 else data
    try:
        out = huffman.decode(bytes(data), max_count=3000)
    except FormatError:
        return
    assert out.dtype == np.int64 and out.size <= 3000 and (out.size == 0 or int(out.min()) >= 0)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_format_error(blob: bytes) -> None:
    with contextlib.suppress(FormatError):
        huffman.decode(blob, max_count=1000)
    with pytest.raises(FormatError):
        decode_records(blob)
    with pytest.raises(FormatError):
        decode_records(b"MCSB\x01\x00\x00\x00" + blob)
