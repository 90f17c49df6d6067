"""compress_stream on small sharded checkpoints: exact round trip, layout kept, κ exact, pool-independent."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from compression_core.errors import Cancelled, CompressionError
from compression_core.format.stream import iter_records
from compression_core.job.pipeline import compress_state_dict
from compression_core.methods.prune.apply import global_keeps
from compression_core.select import select_tensors
from compression_core.spec import Spec, parse_spec
from compression_core.streaming.pipeline import GROUP_TENSORS, compress_stream, tensor_groups
from compression_core.streaming.source import TensorInfo, open_source, read_safetensors_header
from tests.streaming.conftest import INDEX, transformer_like

SPARSITY = 0.8


def _spec(**extra: object) -> Spec:
    rules = [
        {
            "select": {"name": ["*proj.weight", "lm_head.weight"]},
            "steps": [
                {"type": "prune", "sparsity": SPARSITY, "scope": "global"},
                {"type": "quantize", "k": 8},
            ],
        },
        {"select": {"name": "*embed_tokens.weight"}, "steps": [{"type": "lowrank", "rank": 4}]},
    ]
    return parse_spec(json.dumps({"rules": rules, **extra}))


def _outputs(out: Path, shards: list[str]) -> dict[str, torch.Tensor]:
    dense: dict[str, torch.Tensor] = {}
    for shard in shards:
        dense.update(load_file(str(out / shard)))
    return dense


def test_round_trip_is_exact_and_keeps_layout_and_dtypes(
    sharded: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    index, state = sharded
    out = tmp_path / "out"
    metrics = compress_stream(index, _spec(), out, workers=2)
    shards = sorted(p.name for p in index.parent.glob("model-*.safetensors"))
    assert sorted(p.name for p in out.iterdir()) == sorted([*shards, INDEX, "model.bin", "metrics.json"])
    assert (out / INDEX).read_bytes() == index.read_bytes()
    for shard in shards:  # same header bytes: names, dtypes, shapes, offsets and metadata
        assert read_safetensors_header(out / shard).raw == read_safetensors_header(index.parent / shard).raw
        assert (out / shard).stat().st_size == (index.parent / shard).stat().st_size
    dense = _outputs(out, shards)
    decoded = {record.name: record.reconstruct() for record, _ in iter_records(out / "model.bin")}
    assert list(decoded) == [info.name for info in open_source(index).infos]
    for name, original in state.items():
        assert dense[name].dtype == original.dtype  # bf16 stays bf16, fp16 fp16, fp32 fp32
        assert decoded[name].dtype == original.dtype
        assert torch.equal(dense[name], decoded[name])
    assert torch.equal(
        dense["model.layers.0.input_layernorm.weight"], state["model.layers.0.input_layernorm.weight"]
    )
    assert metrics["files"]["model_bin_bytes"] == (out / "model.bin").stat().st_size
    assert metrics["streaming"] == {"workers": 2, "input_files": 3}


def test_global_pruning_keeps_exactly_kappa_across_shards_like_in_memory(
    sharded: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    index, _ = sharded
    spec = _spec()
    compress_stream(index, spec, tmp_path / "out", workers=1)
    source = open_source(index)
    merged = {info.name: source.load(info.name) for info in source.infos}  # the in-memory equivalent
    selections = select_tensors(merged, spec)
    pruned = [n for n, s in selections.items() if s.rule.prune is not None]
    total = sum(merged[n].numel() for n in pruned)
    kappa = round((1 - SPARSITY) * total)
    shards = sorted(p.name for p in index.parent.glob("model-*.safetensors"))
    dense = _outputs(tmp_path / "out", shards)
    kept = {n: int(torch.count_nonzero(dense[n])) for n in pruned}
    assert sum(kept.values()) == kappa  # k-means centres are never exactly 0 here
    assert kept == global_keeps(merged, selections)
    assert len({merged[n].shape for n in pruned}) > 1 and len({s for s in shards}) == 3
    records, _ = compress_state_dict(merged, spec)
    for record in records:
        assert torch.equal(record.reconstruct(), dense[record.name]), record.name


def test_output_bytes_do_not_depend_on_the_pool_size(
    sharded: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    index, _ = sharded
    for workers in (1, 2):
        compress_stream(index, _spec(), tmp_path / f"w{workers}", workers=workers)
    for file in sorted(p.name for p in (tmp_path / "w1").iterdir() if p.name != "metrics.json"):
        assert (tmp_path / "w1" / file).read_bytes() == (tmp_path / "w2" / file).read_bytes(), file


def test_dense_outputs_are_optional(sharded: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    index, _ = sharded
    metrics = compress_stream(index, _spec(outputs={"dense": False}), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "model.bin"]
    assert "dense_files" not in metrics["files"]


def test_torch_file_gives_a_model_pth_that_torch_and_zip_accept(tmp_path: Path) -> None:
    state = transformer_like()
    torch.save(state, tmp_path / "model.pth")
    compress_stream(tmp_path / "model.pth", _spec(), tmp_path / "out", workers=2)
    dense = torch.load(tmp_path / "out" / "model.pth", weights_only=True)
    decoded = {
        record.name: record.reconstruct() for record, _ in iter_records(tmp_path / "out" / "model.bin")
    }
    assert list(dense) == list(state)
    assert all(torch.equal(dense[n], decoded[n]) and dense[n].dtype == state[n].dtype for n in state)
    with zipfile.ZipFile(tmp_path / "out" / "model.pth") as archive:
        assert archive.testzip() is None  # every CRC-32 matches the bytes


def test_cancel_leaves_no_partial_files(
    sharded: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    index, _ = sharded
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        compress_stream(index, _spec(), tmp_path / "out", should_cancel=should_cancel, workers=2)
    assert list((tmp_path / "out").iterdir()) == []


def test_data_aware_specs_are_not_streamed(tmp_path: Path) -> None:
    spec = parse_spec(json.dumps({"model": {"arch": "lenet300"}, "rules": []}))
    with pytest.raises(CompressionError, match="data-free"):
        compress_stream(tmp_path / "x.safetensors", spec, tmp_path / "out")


def test_small_tensors_are_grouped_in_order_and_large_ones_go_alone() -> None:
    """Pool tasks are runs of consecutive tensors (their entries decoded in one pass), never reordered."""
    sizes = [3, 4, 2, 20, 1, 1, 9, 5]
    infos = [TensorInfo(f"t{i}", (n,), torch.float32, "m.safetensors") for i, n in enumerate(sizes)]
    groups = tensor_groups(infos, limit=10)
    assert [info for group in groups for info in group] == infos
    assert [[i.numel for i in g] for g in groups] == [[3, 4, 2], [20], [1, 1], [9], [5]]


def test_a_group_holds_at_most_max_tensors() -> None:
    """A group reports progress and checks cancellation once it is done: a long run of small tensors is
    split by count too (200 tensors of 16k entries, 3.3M in all, were one task: no progress, no cancel)."""
    infos = [TensorInfo(f"t{i}", (128, 128), torch.float32, "m.safetensors") for i in range(200)]
    groups = tensor_groups(infos)
    assert [info for group in groups for info in group] == infos
    assert max(len(g) for g in groups) == GROUP_TENSORS and len(groups) == 13
