"""N:M semi-structured pruning (`"prune": {"pattern": "2:4"}`): the mask, its ties, a shorter last group, the
spec's checks and the record the step leaves (stored by the `.bin` writer)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from compression_core.format import decode_records, encode_records
from compression_core.methods.apply import compress_tensor
from compression_core.methods.prune import pattern as pattern_module
from compression_core.methods.prune.pattern import group_keep, pattern_positions
from compression_core.methods.prune.spec import PruneStep
from compression_core.spec.parse import parse_spec


def _mask(tensor: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(tensor.numel(), dtype=torch.bool)
    mask[positions] = True
    return mask.reshape(tensor.shape[0] if tensor.dim() > 1 else 1, -1)


def _reference(rows: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The mask by a stable descending sort of each group, one group at a time (ties: lowest index)."""
    mask = torch.zeros(rows.shape, dtype=torch.bool)
    for r in range(rows.shape[0]):
        for lo in range(0, rows.shape[1], m):
            group = rows[r, lo : lo + m].abs()
            order = torch.sort(group, descending=True, stable=True).indices[:n]
            mask[r, lo + order] = True
    return mask


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 6),
    d=st.integers(1, 40),
    nm=st.sampled_from([(2, 4), (1, 4), (3, 4), (1, 2), (4, 8), (2, 3)]),
    levels=st.sampled_from([1, 3, None]),
    seed=st.integers(0, 1000),
)
def test_every_group_keeps_its_n_largest(rows, d, nm, levels, seed):
    n, m = nm
    w = torch.randn(rows, d, generator=torch.Generator().manual_seed(seed))
    if levels is not None:  # many ties
        w = torch.round(w * levels) / levels
    positions = pattern_positions(w, n, m)
    assert torch.equal(positions, torch.sort(positions).values)
    assert positions.unique().numel() == positions.numel()
    mask = _mask(w, positions)
    for lo in range(0, d, m):
        size = min(m, d - lo)
        kept = mask[:, lo : lo + size]
        assert (kept.sum(dim=1) == min(n, size)).all()  # exactly N of M (all of a short last group <= N)
        group = w[:, lo : lo + size].abs()
        for r in range(rows):
            if 0 < int(kept[r].sum()) < size:
                assert group[r][kept[r]].min() >= group[r][~kept[r]].max()  # the kept ones are the largest
    assert torch.equal(mask, _reference(w, n, m))  # ties go to the lowest index, as a stable sort


def test_two_of_four_on_a_linear_weight_with_ties() -> None:
    w = torch.tensor([[1.0, -3.0, 2.0, 0.5, 7.0, -7.0, 7.0, 7.0], [0.0, 0.0, 0.0, 0.0, 1.0, 5.0, -6.0, 1.0]])
    assert pattern_positions(w, 2, 4).tolist() == [1, 2, 4, 5, 8, 9, 13, 14]


def test_a_row_that_is_not_a_multiple_of_m_ends_in_a_shorter_group() -> None:
    w = torch.tensor([[1.0, -3.0, 2.0, 0.5, 4.0, -5.0, 6.0], [9.0, 8.0, 7.0, 6.0, 0.0, 1.0, 2.0]])
    assert pattern_positions(w, 2, 4).tolist() == [1, 2, 5, 6, 7, 8, 12, 13]  # last group of 3 keeps 2
    assert pattern_positions(w, 1, 4).tolist() == [1, 6, 7, 13]
    assert pattern_positions(w, 3, 4).tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 13]  # all of the 3


def test_a_conv_weight_is_grouped_along_its_flattened_inputs() -> None:
    w = torch.randn(6, 3, 5, 5, generator=torch.Generator().manual_seed(0))  # rows of 75: 18 groups + 3
    positions = pattern_positions(w, 2, 4)
    assert positions.numel() == 6 * (18 * 2 + 2)
    assert torch.equal(_mask(w, positions), _reference(w.reshape(6, -1), 2, 4))


def test_chunks_of_rows_give_the_same_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    w = torch.randn(64, 30, generator=torch.Generator().manual_seed(1))
    whole = pattern_positions(w, 2, 4)
    monkeypatch.setattr(pattern_module, "_CHUNK", 100)  # three rows at a time
    assert torch.equal(pattern_positions(w, 2, 4), whole)
    assert torch.equal(pattern_positions(w, 2, 4, dtype=torch.int32), whole.to(torch.int32))


def test_a_large_weight_is_pruned_two_of_four() -> None:
    w = torch.randn(4096, 4096, generator=torch.Generator().manual_seed(2))
    positions = pattern_positions(w, 2, 4)
    assert positions.numel() == 4096 * 4096 // 2
    kept = torch.zeros(w.numel(), dtype=torch.bool)
    kept[positions] = True
    groups, mags = kept.view(-1, 4), w.abs().view(-1, 4)
    assert (groups.sum(dim=1) == 2).all()
    smallest_kept = torch.where(groups, mags, torch.inf).min(dim=1).values
    largest_dropped = torch.where(groups, -torch.inf, mags).max(dim=1).values
    assert (smallest_kept >= largest_dropped).all()


def test_iterative_schedules_reach_the_pattern() -> None:
    assert [group_keep(2, 4, f) for f in (0.1, 0.5, 0.75, 1.0)] == [4, 3, 3, 2]
    assert [group_keep(1, 8, f) for f in (0.25, 0.5, 1.0)] == [7, 5, 1]


def test_the_step_records_positions_and_the_pattern_and_the_bin_stores_them() -> None:
    w = torch.randn(8, 12, generator=torch.Generator().manual_seed(3))
    steps = '[{"type": "prune", "pattern": "2:4"}]'
    spec = parse_spec('{"rules": [{"select": {"name": "*"}, "steps": ' + steps + "}]}")
    record = compress_tensor("fc.weight", w, spec.rules[0])
    assert record.method == "prune" and record.positions is not None and record.positions.numel() == 48
    assert record.stats["pattern"] == "2:4" and record.stats["sparsity"] == pytest.approx(0.5)
    (decoded,), _ = decode_records(encode_records([record]).data)
    dense = decoded.reconstruct()
    assert decoded.stats["pattern"] == "2:4"
    assert ((dense != 0).reshape(8, 3, 4).sum(dim=2) == 2).all()
    assert torch.equal(dense.reshape(-1)[record.positions], w.reshape(-1)[record.positions])


def test_quantize_codes_the_kept_values_of_a_pattern() -> None:
    w = torch.randn(16, 16, generator=torch.Generator().manual_seed(4))
    spec = parse_spec(
        '{"rules": [{"select": {"name": "*"}, "steps": [{"type": "prune", "pattern": "2:4"},'
        ' {"type": "quantize", "k": 4}]}]}'
    )
    record = compress_tensor("w", w, spec.rules[0])
    assert record.method == "prune+quantize" and record.codebook is not None and record.codebook.numel() == 4
    assert ((record.reconstruct() != 0).reshape(16, 4, 4).sum(dim=2) <= 2).all()


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"pattern": "4:4"}, "1 <= N < M"),
        ({"pattern": "0:4"}, "1 <= N < M"),
        ({"pattern": "2:512"}, "1 <= N < M <= 256"),
        ({"pattern": "2/4"}, '"N:M"'),
        ({"pattern": "2:4", "sparsity": 0.5}, "exactly one of keep or sparsity, or a pattern alone"),
        ({"pattern": "2:4", "scope": "global"}, 'scope "global" does not'),
    ],
)
def test_bad_patterns_are_refused_naming_the_field(step: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        PruneStep.model_validate(step)
    if "pattern" in step and len(step) == 1:
        assert info.value.errors()[0]["loc"] == ("pattern",)


def test_a_sharded_checkpoint_streams_through_the_pattern_like_in_memory(tmp_path) -> None:
    from safetensors.torch import load_file

    from compression_core.job.pipeline import compress_state_dict
    from compression_core.streaming.pipeline import compress_stream
    from tests.streaming.conftest import transformer_like, write_sharded

    state = transformer_like()  # bfloat16 matrices: many exact ties
    index = write_sharded(tmp_path / "ckpt", state, shards=3)
    rules = [{"select": {"name": "*proj.weight"}, "steps": [{"type": "prune", "pattern": "2:4"}]}]
    spec = parse_spec(json.dumps({"rules": rules}))
    metrics = compress_stream(index, spec, tmp_path / "out", workers=2)
    dense: dict[str, torch.Tensor] = {}
    for shard in sorted((tmp_path / "out").glob("model-*.safetensors")):
        dense.update(load_file(str(shard)))
    records, _ = compress_state_dict(state, spec)
    pruned = [r for r in records if r.name.endswith("proj.weight")]
    assert len(pruned) == 9
    for record in pruned:
        assert torch.equal(record.reconstruct(), dense[record.name]), record.name  # same as in memory
        groups = (dense[record.name] != 0).reshape(-1, 4).sum(dim=1)
        assert (groups <= 2).all() and record.positions.numel() == record.numel // 2
    entries = {e["name"]: e for e in metrics["tensors"]}
    assert entries["model.layers.2.mlp.down_proj.weight"]["stats"]["pattern"] == "2:4"


def test_the_lc_c_step_projects_onto_the_pattern() -> None:
    from compression_core.methods.lc.cstep import c_step
    from compression_core.select import select_tensors

    spec = parse_spec(
        json.dumps(
            {
                "rules": [{"select": {"name": "fc.weight"}, "steps": [{"type": "prune", "pattern": "2:4"}]}],
                "model": {"arch": "mlp"},
                "data": {"builtin": "digits"},
                "lc": {"mu0": 1e-3},
            }
        )
    )
    g = torch.Generator().manual_seed(5)
    weights = {"fc.weight": torch.randn(12, 16, generator=g)}
    lambdas = {"fc.weight": torch.randn(12, 16, generator=g) * 1e-3}
    mu = 0.5
    record = c_step(weights, select_tensors(weights, spec), mu, lambdas=lambdas)["fc.weight"]
    shifted = weights["fc.weight"] - lambdas["fc.weight"] / mu
    assert torch.equal(record.positions, pattern_positions(shifted, 2, 4))  # Π: the N:M projection
    assert torch.equal(
        record.reconstruct().reshape(-1)[record.positions], shifted.reshape(-1)[record.positions]
    )
