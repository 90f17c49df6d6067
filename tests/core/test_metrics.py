import json
import math

import numpy as np
import pytest
import torch

from compression_core.job.pipeline import compress_state_dict
from compression_core.methods.prune.apply import keep_positions
from compression_core.metrics import gap_bits, index_bits, text_table
from compression_core.spec import example_spec

from .conftest import lenet5_state_dict


def gap_cost_by_walking(positions: list[int], width: int) -> int:
    """Walk the positions: each kept weight costs one entry; a filler entry skips 2^b - 1 positions."""
    escape = (1 << width) - 1
    entries, previous = 0, -1
    for p in positions:
        skipped = p - previous - 1
        while skipped >= escape:
            entries += 1  # filler
            skipped -= escape
        entries += 1
        previous = p
    return width * entries


def best_gap_cost(positions: list[int]) -> tuple[int, int]:
    return min((gap_cost_by_walking(positions, b), b) for b in range(2, 33))


@pytest.mark.parametrize("seed", range(5))
def test_gap_bits_match_a_walk_over_the_positions(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 5000))
    keep = int(rng.integers(1, n))
    positions = sorted(rng.choice(n, keep, replace=False).tolist())
    assert gap_bits(np.array(positions)) == best_gap_cost(positions)


def test_gap_bits_small_cases():
    # positions 0 and 9 with b=2: entry(0), then 8 skipped = 2 fillers (3 each) + 2 left -> entry: 4 entries
    assert gap_cost_by_walking([0, 9], 2) == 8
    assert gap_bits(np.array([0, 9])) == (8, 2)
    assert gap_bits(np.array([], dtype=np.int64)) == (0, 0)
    assert [index_bits(k) for k in (1, 2, 3, 4, 5, 64, 65536)] == [0, 1, 2, 2, 3, 6, 16]


def test_lc_counts_for_the_seed_001_lenet5_spec():
    sd = lenet5_state_dict()
    spec = example_spec("lc-lenet5-prune-conv-quantize-linear")
    _, metrics = compress_state_dict(sd, spec)
    totals = metrics["totals"]
    # Compressed parameters: kept conv weights + (assignments + codebook) of each linear; biases not counted.
    assert totals["lc_params"] == 104 + 2505 + (400_000 + 2) + (5_000 + 2) == 407_613
    assert totals["lc_original_params"] == 500 + 25_000 + 400_000 + 5_000 == 430_500
    # Bits: conv = best gap coding + 32 per kept value; linear = 1 bit per index (k=2) + 2 float32 entries.
    conv1 = best_gap_cost(keep_positions(sd["conv1.weight"], 104).tolist())[0] + 32 * 104
    conv2 = best_gap_cost(keep_positions(sd["conv2.weight"], 2505).tolist())[0] + 32 * 2505
    fc1 = 1 * 400_000 + 32 * 2
    fc2 = 1 * 5_000 + 32 * 2
    assert totals["lc_bits"] == conv1 + conv2 + fc1 + fc2
    assert totals["lc_ratio"] == pytest.approx(32 * 430_500 / (conv1 + conv2 + fc1 + fc2))
    # Same ballpark as the seed's 26.4x for this scheme (its trained weights differ from ours).
    assert 20 < totals["lc_ratio"] < 35
    by_name = {e["name"]: e for e in metrics["tensors"]}
    assert not by_name["fc1.bias"]["lc"]["counted"]
    assert by_name["conv1.weight"]["kept"] == 104 and by_name["conv1.weight"]["nonzeros"] == 104
    assert by_name["fc1.weight"]["codebook_size"] == 2
    json.dumps(metrics)  # serializable as it is


def test_relative_error_and_table():
    sd = lenet5_state_dict()
    _, metrics = compress_state_dict(sd, example_spec("lc-lenet5-prune-conv-quantize-linear"))
    by_name = {e["name"]: e for e in metrics["tensors"]}
    w = sd["conv1.weight"].reshape(-1)
    pos = keep_positions(w, 104)
    pruned = torch.zeros_like(w)
    pruned[pos] = w[pos]
    expected = float(torch.linalg.norm(w - pruned) / torch.linalg.norm(w))
    assert by_name["conv1.weight"]["rel_error"] == pytest.approx(expected, rel=1e-6)
    assert by_name["fc1.bias"]["rel_error"] == 0.0
    assert 0 < metrics["totals"]["rel_error_compressed"] < 1
    assert not math.isnan(metrics["totals"]["rel_error_compressed"])
    table = text_table(metrics["tensors"])
    assert "conv2.weight" in table and "prune" in table and "quantize" in table
