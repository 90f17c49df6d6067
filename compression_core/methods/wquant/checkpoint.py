"""The quantized checkpoint in a compressed-tensors format, one plain tar of a folder that
`AutoModelForCausalLM.from_pretrained` (transformers with compressed-tensors installed) loads.

For each quantized linear `L` the weights file holds, instead of `L.weight`:
- `pack-quantized` (symmetric; what vLLM's W4A16/W8A16 kernels read): `L.weight_packed` int32
  (out, ceil(in b / 32)), the integers packed (`grid.pack_int32`), and `L.weight_shape` int64 [out, in];
- `int-quantized` (asymmetric too): `L.weight` int8 (out, in), one integer per weight, and, asymmetric,
  `L.weight_zero_point` int8 (out, in / group_size);
- both: `L.weight_scale` (out, in / group_size), per channel (out, 1), in the weight's dtype.
Every other tensor is stored as uploaded (its dtype). `config.json` is the uploaded one plus
`quantization_config` (`quant_method: compressed-tensors`, one config group targeting `Linear`, the layers
kept in float listed in `ignore`); the tokenizer files are carried untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression_core.methods.wquant.grid import pack_int32
from compression_core.methods.wquant.layer import QuantizedWeight
from compression_core.methods.wquant.spec import WQuantSpec

__all__ = ["OUTPUT_TAR", "quantization_config", "write_quantized"]

OUTPUT_TAR = "model.quantized.tar"
CT_VERSION = "0.20.1"  # the compressed-tensors release this layout was checked against (tests load it)


def quantization_config(config: WQuantSpec, ignored: list[str]) -> dict[str, Any]:
    weights = {
        "dynamic": False,
        "group_size": config.group_size,
        "num_bits": config.bits,
        "strategy": "group" if config.group_size is not None else "channel",
        "symmetric": config.symmetric,
        "type": "int",
    }
    layout = str(config.format or "pack-quantized")
    return {
        "config_groups": {
            "group_0": {
                "format": layout,
                "input_activations": None,
                "output_activations": None,
                "targets": ["Linear"],
                "weights": weights,
            }
        },
        "format": layout,
        "global_compression_ratio": None,
        "ignore": ignored,
        "kv_cache_scheme": None,
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
        "sparsity_config": {},
        "transform_config": {},
        "version": CT_VERSION,
    }


def packed_tensors(
    model: nn.Module,
    results: Mapping[str, QuantizedWeight],
    original: Mapping[str, torch.Tensor],
    bits: int,
    layout: str = "pack-quantized",
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors: quantized layers in `layout`, everything else as uploaded (names and
    dtypes)."""
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        layer = name.removesuffix(".weight")
        if name.endswith(".weight") and layer in results:
            result = results[layer]
            dtype = original[name].dtype if name in original else tensor.dtype
            if layout == "int-quantized":
                out[name] = result.q.to(torch.int8).contiguous()
                if result.zero is not None:
                    out[f"{layer}.weight_zero_point"] = result.zero.to(torch.int8).contiguous()
            else:
                packed = result.packed if result.packed is not None else pack_int32(result.q, bits)
                out[f"{layer}.weight_packed"] = packed
                out[f"{layer}.weight_shape"] = torch.tensor(list(result.shape), dtype=torch.int64)
            out[f"{layer}.weight_scale"] = result.scale.to(dtype)
        elif name in original:
            out[name] = tensor.detach().cpu().to(original[name].dtype)
    return out


def write_quantized(
    out_dir: Path,
    source: Any,
    model: nn.Module,
    results: Mapping[str, QuantizedWeight],
    original: Mapping[str, torch.Tensor],
    config: WQuantSpec,
) -> Path:
    """`out_dir/model.quantized.tar` (see the module docstring)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    ignored = [n for n in linears if n not in results]
    tensors = packed_tensors(model, results, original, config.bits, str(config.format or "pack-quantized"))
    extra = {"quantization_config": quantization_config(config, ignored)}
    written: Path = source.write_checkpoint(out_dir / OUTPUT_TAR, tensors, extra)
    return written
