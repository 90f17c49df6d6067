"""Property tests: the spec validator never fails with anything but ValidationError, valid specs
round-trip through JSON, absurd values are refused, and the `.bin` decoder only ever raises FormatError
(also behind a valid checksum, with any manifest value replaced by any JSON value)."""

from __future__ import annotations

import contextlib
import json
import struct
import zlib
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from compression_core.errors import FormatError
from compression_core.format import decode_records, decode_state_dict, encode_records
from compression_core.format.layout import FIXED_HEADER, MAGIC, VERSION
from compression_core.records import TensorRecord
from compression_core.spec import Spec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
step_words = st.sampled_from(
    ["prune", "quantize", "lowrank", "keep", "sparsity", "k", "rank", "type", "steps"]
)
spec_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6) | step_words,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(step_words | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, spec_like, st.fixed_dictionaries({"rules": st.lists(spec_like, max_size=3)})))
def test_random_json_only_raises_validation_error(document: Any) -> None:
    try:
        text = json.dumps(document)
    except ValueError:
        return
    with contextlib.suppress(ValidationError):
        Spec.model_validate_json(text)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_validation_error(blob: bytes) -> None:
    with pytest.raises(ValidationError):
        Spec.model_validate_json(blob if not blob.strip().startswith(b"{") else blob + b"}{")


prune = st.one_of(
    st.builds(lambda k: {"type": "prune", "keep": k}, st.integers(1, 2**40)),
    st.builds(
        lambda s, scope: {"type": "prune", "sparsity": s, "scope": scope},
        st.floats(0, 0.999),
        st.sampled_from(["layer", "global"]),
    ),
)
quantize = st.builds(
    lambda k, init, iters, seed: {"type": "quantize", "k": k, "init": init, "iters": iters, "seed": seed},
    st.integers(2, 65536),
    st.sampled_from(["linear", "density", "kmeans++"]),
    st.integers(1, 10_000),
    st.integers(0, 2**32 - 1),
)
lowrank = st.one_of(
    st.builds(lambda r: {"type": "lowrank", "rank": r}, st.integers(1, 4096)),
    st.builds(lambda e: {"type": "lowrank", "energy": e}, st.floats(0.001, 1.0)),
    st.builds(lambda a: {"type": "lowrank", "alpha": a}, st.floats(1e-9, 1e6)),
)
steps = st.one_of(st.tuples(prune), st.tuples(quantize), st.tuples(prune, quantize), st.tuples(lowrank)).map(
    list
)
rules = st.builds(
    lambda name, pattern, steps, encoding: {
        "name": name,
        "select": {"name": pattern},
        "steps": steps,
        "encoding": encoding,
    },
    st.none() | st.text(max_size=10),
    st.text(min_size=1, max_size=10) | st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3),
    steps,
    st.sampled_from(["huffman", "raw"]),
)
specs = st.builds(
    lambda r, d: {"version": 1, "rules": r, "default": {"dtype": d}},
    st.lists(rules, max_size=4),
    st.sampled_from(["keep", "float16"]),
)


@settings(max_examples=200, deadline=None)
@given(specs)
def test_valid_specs_round_trip_through_json(document: dict[str, Any]) -> None:
    spec = Spec.model_validate_json(json.dumps(document))
    again = Spec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert json.loads(again.model_dump_json()) == json.loads(spec.model_dump_json())


@pytest.mark.parametrize(
    "step",
    [
        {"type": "quantize", "k": 10**9},
        {"type": "quantize", "k": 1},
        {"type": "quantize", "k": 8, "iters": 10**6},
        {"type": "lowrank", "rank": -1},
        {"type": "lowrank", "rank": 0},
        {"type": "lowrank", "energy": 2.0},
        {"type": "prune", "keep": 10**15},
        {"type": "prune", "keep": 0},
        {"type": "prune", "sparsity": 1.0},
        {"type": "prune", "sparsity": -0.1},
    ],
)
def test_absurd_values_are_refused_naming_the_field(step: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate({"rules": [{"steps": [step]}]})
    locations = [".".join(map(str, e["loc"])) for e in caught.value.errors()]
    assert any(loc.startswith("rules.0.steps.0") for loc in locations), locations


def _valid_bin() -> bytes:
    generator = torch.Generator().manual_seed(0)
    records = [
        TensorRecord("dense", (3, 4), torch.float32, values=torch.randn(12, generator=generator)),
        TensorRecord(
            "pq",
            (6, 5),
            torch.float32,
            positions=torch.tensor([0, 3, 7, 8, 20, 29]),
            codebook=torch.tensor([-1.0, 0.5, 2.0]),
            indices=torch.tensor([0, 1, 2, 2, 1, 0]),
            method="prune+quantize",
        ),
        TensorRecord(
            "lr",
            (4, 6),
            torch.float32,
            factors=(torch.randn(4, 2, generator=generator), torch.randn(2, 6)),
            method="lowrank",
        ),
    ]
    return encode_records(records, metadata={"source": "test"}).data


VALID = _valid_bin()


def _split(data: bytes) -> tuple[Any, bytes]:
    mlen = struct.unpack("<I", data[8:12])[0]
    return json.loads(zlib.decompress(data[FIXED_HEADER : FIXED_HEADER + mlen])), data[FIXED_HEADER + mlen :]


def _pack(manifest: Any, payload: bytes) -> bytes:
    body = zlib.compress(json.dumps(manifest).encode()) + payload
    mlen = len(body) - len(payload)
    return MAGIC + struct.pack("<HHIQI", VERSION, 0, mlen, len(payload), zlib.crc32(body)) + body


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


MANIFEST, PAYLOAD = _split(VALID)
PATHS = [p for p in _paths(MANIFEST) if p]
hostile_numbers = st.sampled_from([-1, 0, 1, 2**31, 2**32 + 1, 2**62, 2**63, 10**30, 1e308, -(2**63)])


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    node = json.loads(json.dumps(node))
    target = node
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return node


def _decodes_cleanly(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        decode_state_dict(data)


def test_the_fixture_decodes() -> None:
    assert set(decode_state_dict(VALID)) == {"dense", "pq", "lr"}
    assert _pack(MANIFEST, PAYLOAD) != b"" and decode_records(_pack(MANIFEST, PAYLOAD))[1] == {
        "source": "test"
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), st.one_of(json_values, hostile_numbers))
def test_any_manifest_value_behind_a_valid_checksum_only_raises_format_error(
    path: tuple[Any, ...], value: Any
) -> None:
    _decodes_cleanly(_pack(_replace(MANIFEST, path, value), PAYLOAD))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(0, len(PAYLOAD)))
def test_payload_edits_behind_a_valid_checksum_only_raise_format_error(blob: bytes, at: int) -> None:
    _decodes_cleanly(_pack(MANIFEST, PAYLOAD[:at] + blob + PAYLOAD[at + len(blob) :]))
    _decodes_cleanly(_pack(MANIFEST, PAYLOAD[:at] + blob))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_format_error(blob: bytes) -> None:
    _decodes_cleanly(blob)
    _decodes_cleanly(VALID[:FIXED_HEADER] + blob)
