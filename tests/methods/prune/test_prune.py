import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compression_core.methods.prune.apply import global_keep_counts, keep_count, keep_positions
from compression_core.methods.prune.spec import PruneStep


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    frac=st.floats(0, 1),
    seed=st.integers(0, 1000),
    levels=st.sampled_from([3, 1000, None]),
)
def test_keeps_exactly_keep_largest_weights(n, frac, seed, levels):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=g)
    if levels is not None:  # many ties
        w = torch.round(w * levels / 3) / levels
    keep = max(0, min(n, round(frac * n)))
    pos = keep_positions(w, keep)
    assert pos.numel() == keep
    assert torch.equal(pos, torch.sort(pos).values) and pos.unique().numel() == keep
    if 0 < keep < n:
        mask = torch.zeros(n, dtype=torch.bool)
        mask[pos] = True
        assert w[mask].abs().min() >= w[~mask].abs().max()


def test_ties_are_broken_by_position():
    w = torch.tensor([1.0, -1.0, 1.0, 0.5, -1.0])
    assert keep_positions(w, 2).tolist() == [0, 1]
    assert keep_positions(w, 3).tolist() == [0, 1, 2]


def test_keep_count_from_sparsity():
    assert keep_count(PruneStep(sparsity=0.9), 1000) == 100
    assert keep_count(PruneStep(sparsity=0.999), 10) == 1
    assert keep_count(PruneStep(keep=7), 1000) == 7


def test_global_ranking_matches_one_concatenated_ranking():
    g = torch.Generator().manual_seed(1)
    tensors = [torch.randn(20, 5, generator=g) * s for s in (0.1, 1.0, 3.0)]
    counts = global_keep_counts(tensors, 60)
    assert sum(counts) == 60
    flat = torch.cat([t.reshape(-1) for t in tensors])
    kept = torch.zeros(flat.numel(), dtype=torch.bool)
    kept[keep_positions(flat, 60)] = True
    assert counts == [int(p.sum()) for p in torch.split(kept, [100, 100, 100])]
    assert counts[0] < counts[1] < counts[2]
