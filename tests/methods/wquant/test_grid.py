"""The integer grid and the packing, against compressed-tensors' own primitives (what transformers uses to
read the checkpoint back), and GPTQ against round-to-nearest on the error it minimizes."""

from __future__ import annotations

import pytest
import torch

from compression_core.errors import InputError
from compression_core.methods.wquant.grid import Grid, pack_int32, unpack_int32
from compression_core.methods.wquant.layer import gptq, rtn

ct = pytest.importorskip("compressed_tensors")


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_packing_is_compressed_tensors_bit_for_bit(bits: int) -> None:
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

    torch.manual_seed(bits)
    q = torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (5, 200), dtype=torch.int8)
    packed = pack_int32(q, bits)
    assert torch.equal(packed, pack_to_int32(q, bits))
    assert torch.equal(unpack_int32(packed, bits, 200), q)


@pytest.mark.parametrize("group", [32, 128, None])
@pytest.mark.parametrize("bits", [4, 8])
def test_round_to_nearest_is_compressed_tensors_fake_quantization(bits: int, group: int | None) -> None:
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils.helpers import calculate_qparams

    torch.manual_seed(0)
    w = torch.randn(48, 256)
    w[3, :32] = 0.0  # an all-zero group: its scale is eps, not 0
    ours = rtn(w, Grid(bits), group)
    strategy = "group" if group is not None else "channel"
    args = QuantizationArgs(num_bits=bits, type="int", symmetric=True, strategy=strategy, group_size=group)
    groups = w.reshape(48, -1, group or 256)
    scale, zero = calculate_qparams(groups.amin(-1), groups.amax(-1), args)
    assert torch.equal(ours.scale, scale)
    assert torch.equal(ours.dequantized(), fake_quantize(w, scale, zero, args))
    assert int(ours.q.min()) >= -(1 << (bits - 1)) and int(ours.q.max()) < 1 << (bits - 1)


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("group", [64, None])
def test_gptq_beats_round_to_nearest_on_the_layer_output(act_order: bool, group: int | None) -> None:
    torch.manual_seed(1)
    w = torch.randn(64, 256)
    x = torch.randn(4096, 256) @ torch.randn(256, 256) * 0.3  # correlated inputs, as in a network
    hessian = 2 * x.T @ x / x.shape[0]
    ours = gptq(w, hessian, Grid(4), group, act_order=act_order)
    plain = rtn(w, Grid(4), group)

    def output_error(deq: torch.Tensor) -> float:
        return float(((x @ (deq - w).T) ** 2).sum())

    assert output_error(ours.dequantized()) < 0.75 * output_error(plain.dequantized())
    assert ours.scale.shape == (64, 256 // (group or 256))


def test_a_width_that_is_not_a_multiple_of_the_group_is_named() -> None:
    with pytest.raises(InputError, match="layer.x: 100 input features"):
        rtn(torch.randn(4, 100), Grid(4), 32, "layer.x")


def test_layers_stacked_on_one_hessian_get_the_integers_each_would_alone() -> None:
    torch.manual_seed(2)
    a, b = torch.randn(64, 256), torch.randn(32, 256)
    x = torch.randn(2048, 256) @ torch.randn(256, 256) * 0.3
    hessian = 2 * x.T @ x / x.shape[0]
    stacked = gptq(torch.cat([a, b]), hessian, Grid(4), 128)
    for part, alone in (
        (stacked.rows(0, 64), gptq(a, hessian, Grid(4), 128)),
        (stacked.rows(64, 96), gptq(b, hessian, Grid(4), 128)),
    ):
        assert torch.equal(part.q, alone.q) and torch.equal(part.scale, alone.scale)
        assert part.loss == pytest.approx(alone.loss, rel=1e-5)


def test_the_packed_form_keeps_the_packing_and_drops_the_int8_copy() -> None:
    """What a job holds per layer until the checkpoint is written (`quantize_model(pack=True)`)."""
    from compression_core.methods.wquant.layer import rtn

    weight = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    result = rtn(weight, Grid(4), 32, "w")
    packed = result.packed_form(4)
    assert packed.q.numel() == 0 and packed.shape == (16, 64) == result.shape
    assert packed.packed is not None and torch.equal(packed.packed, pack_int32(result.q, 4))
    assert packed.packed.numel() * 4 == result.q.numel() // 2  # int4: half the bytes of int8
    assert torch.equal(packed.scale, result.scale) and packed.loss == result.loss
