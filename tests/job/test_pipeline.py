import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compression_core.errors import Cancelled, InputError, SpecError
from compression_core.format import decode_state_dict, encode_records
from compression_core.io import load_state_dict, save_state_dict
from compression_core.job.pipeline import Progress, compress_file, compress_state_dict
from compression_core.spec import Spec, example_spec

from .conftest import lenet5_state_dict


def mixed_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(30, 8, generator=g),
        "conv3d.weight": torch.randn(4, 2, 3, 3, 3, generator=g),
        "conv1d.weight": torch.randn(6, 3, 5, generator=g).to(torch.float64),
        "conv.weight": torch.randn(16, 8, 3, 3, generator=g).to(torch.bfloat16),
        "bn.weight": torch.rand(16, generator=g),
        "bn.running_var": torch.rand(16, generator=g),
        "bn.num_batches_tracked": torch.tensor(7),
        "fc.weight": torch.randn(12, 40, generator=g).to(torch.float16),
        "fc.bias": torch.randn(12, generator=g),
        "scale": torch.tensor(0.5),
        "mask": torch.tensor([True, False, True]),
    }


SPECS = {
    "prune": {"rules": [{"select": {"name": "*"}, "steps": [{"type": "prune", "sparsity": 0.8}]}]},
    "quantize": {"rules": [{"select": {"name": "*"}, "steps": [{"type": "quantize", "k": 5}]}]},
    "prune+quantize-raw": {
        "rules": [
            {
                "select": {"name": "*"},
                "steps": [{"type": "prune", "keep": 9}, {"type": "quantize", "k": 3}],
                "encoding": "raw",
            }
        ]
    },
    "global": {
        "rules": [
            {
                "select": {"name": "*", "include_bias_and_norm": True},
                "steps": [
                    {"type": "prune", "sparsity": 0.7, "scope": "global"},
                    {"type": "quantize", "k": 4},
                ],
            }
        ],
        "default": {"dtype": "float16"},
    },
    "lowrank": {
        "rules": [
            {"select": {"kind": "linear"}, "steps": [{"type": "lowrank", "rank": 3}]},
            {"select": {"kind": "conv"}, "steps": [{"type": "lowrank", "energy": 0.5}]},
            {"select": {"kind": "embedding"}, "steps": [{"type": "lowrank", "alpha": 100.0}]},
        ]
    },
}


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_compress_file_round_trip(tmp_path, spec_name):
    sd = mixed_state_dict()
    save_state_dict(sd, tmp_path / "in.safetensors")
    spec = Spec.model_validate(SPECS[spec_name])
    metrics = compress_file(tmp_path / "in.safetensors", spec, tmp_path / "out")
    out = tmp_path / "out"
    decoded = decode_state_dict(out / "model.bin")
    pth = load_state_dict(out / "model.pth")
    assert_bit_identical(decoded, pth)
    assert list(decoded) == list(load_state_dict(tmp_path / "in.safetensors"))  # input order kept
    for name, tensor in sd.items():
        assert decoded[name].dtype == tensor.dtype and decoded[name].shape == tensor.shape
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["totals"]["ratio"] == pytest.approx(metrics["totals"]["ratio"])
    assert metrics["files"]["model_bin_bytes"] == (out / "model.bin").stat().st_size
    assert metrics["totals"]["ratio"] == pytest.approx(
        metrics["totals"]["original_bits"] / (8 * metrics["files"]["model_bin_bytes"])
    )
    assert sum(e["bits"]["coded"] for e in metrics["tensors"]) <= 8 * metrics["files"]["model_bin_bytes"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    untouched = {"bn.num_batches_tracked", "mask"} | ({"scale"} if spec_name != "global" else set())
    for name in untouched:
        assert torch.equal(decoded[name], sd[name])


def test_prune_then_quantize_keeps_zeros_and_at_most_k_values():
    sd = lenet5_state_dict()
    spec = Spec.model_validate(
        {
            "rules": [
                {
                    "select": {"name": "*"},
                    "steps": [{"type": "prune", "keep": 300}, {"type": "quantize", "k": 4}],
                }
            ]
        }
    )
    records, _ = compress_state_dict(sd, spec)
    decoded = decode_state_dict(encode_records(records).data)
    for name in ("conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"):
        w = decoded[name].reshape(-1)
        nonzero = w[w != 0]
        assert nonzero.numel() <= 300
        assert nonzero.unique().numel() <= 4
        kept = torch.topk(sd[name].reshape(-1).abs(), 300).indices
        pruned = torch.ones(w.numel(), dtype=torch.bool)
        pruned[kept] = False
        assert torch.all(w[pruned] == 0)  # pruned entries are exact zeros
    assert torch.equal(decoded["fc1.bias"], sd["fc1.bias"])


def test_global_prune_keeps_exactly_keep_over_the_rule():
    sd = lenet5_state_dict()
    spec = Spec.model_validate(
        {
            "rules": [
                {"select": {"kind": "any"}, "steps": [{"type": "prune", "keep": 5000, "scope": "global"}]}
            ]
        }
    )
    records, metrics = compress_state_dict(sd, spec)
    kept = sum(int(r.positions.numel()) for r in records if r.positions is not None)
    assert kept == 5000
    threshold = min(
        float(r.reconstruct().abs()[r.reconstruct() != 0].min()) for r in records if r.positions is not None
    )
    dropped = torch.cat(
        [(sd[r.name] * (r.reconstruct() == 0)).reshape(-1) for r in records if r.positions is not None]
    )
    assert float(dropped.abs().max()) <= threshold


def test_progress_is_monotone_and_complete(tmp_path):
    save_state_dict(lenet5_state_dict(), tmp_path / "m.pth")
    seen: list[Progress] = []
    compress_file(
        tmp_path / "m.pth", example_spec("deep-compression-lenet5"), tmp_path / "o", progress=seen.append
    )
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    stages = {p.stage for p in seen}
    # data-free jobs stream (issue 14): each tensor is encoded as it is compressed, no separate encode stage
    assert {"load", "prune+quantize", "keep", "write", "done"} <= stages


def test_cancel_between_tensors_writes_nothing(tmp_path):
    save_state_dict(lenet5_state_dict(), tmp_path / "m.pth")
    calls = {"n": 0}

    def cancel_on_third() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    with pytest.raises(Cancelled):
        compress_file(
            tmp_path / "m.pth",
            example_spec("deep-compression-lenet5"),
            tmp_path / "o",
            should_cancel=cancel_on_third,
        )
    assert not (tmp_path / "o" / "model.bin").exists()


def test_apply_time_spec_errors_name_rule_and_tensor():
    sd = lenet5_state_dict()
    spec = Spec.model_validate(
        {
            "rules": [
                {
                    "name": "too many",
                    "select": {"name": "conv1.weight"},
                    "steps": [{"type": "prune", "keep": 501}],
                }
            ]
        }
    )
    with pytest.raises(SpecError, match=r"rule #0 \(too many\): keep=501 .*'conv1.weight'"):
        compress_state_dict(sd, spec)
    bad_lowrank = Spec.model_validate(
        {"rules": [{"select": {"name": "fc1.bias"}, "steps": [{"type": "lowrank", "rank": 1}]}]}
    )
    with pytest.raises(SpecError, match="no matrix view"):
        compress_state_dict(sd, bad_lowrank)


def test_nan_weights_are_refused():
    sd = lenet5_state_dict()
    sd["fc2.weight"][0, 0] = float("nan")
    with pytest.raises(InputError, match="fc2.weight"):
        compress_state_dict(sd, example_spec("lc-lenet5-prune-conv-quantize-linear"))


def test_unusable_device_is_a_clear_error():
    from compression_core.errors import CompressionError

    with pytest.raises(CompressionError, match="device"):
        compress_state_dict(lenet5_state_dict(), example_spec("deep-compression-lenet5"), device="nodevice")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64]),
    step=st.sampled_from(
        [
            [{"type": "prune", "sparsity": 0.5}],
            [{"type": "quantize", "k": 3}],
            [{"type": "prune", "keep": 1}, {"type": "quantize", "k": 2}],
            [{"type": "lowrank", "rank": 2}],
        ]
    ),
    encoding=st.sampled_from(["huffman", "raw"]),
    seed=st.integers(0, 1000),
)
def test_any_shape_and_dtype_round_trips(shape, dtype, step, encoding, seed):
    if step[0]["type"] == "lowrank" and len(shape) < 2:
        shape = [*shape, 3]
    tensor = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    spec = Spec.model_validate(
        {
            "rules": [
                {"select": {"name": "w", "include_bias_and_norm": True}, "steps": step, "encoding": encoding}
            ]
        }
    )
    records, _ = compress_state_dict({"w": tensor}, spec)
    decoded = decode_state_dict(encode_records(records).data)
    assert decoded["w"].dtype == dtype and decoded["w"].shape == tensor.shape
    assert torch.equal(decoded["w"], records[0].reconstruct())
