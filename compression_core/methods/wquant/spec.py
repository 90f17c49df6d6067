"""The top-level `wquant` field: weight-only integer quantization of a Hugging Face model's linear layers
(pydantic only, no torch import).

```json
"model":  {"hf": true},
"data":   {"upload": true},          token ids: `test` for perplexity, `train` for GPTQ's calibration
"wquant": {"bits": 4, "group_size": 128, "algorithm": "gptq", "calibration_rows": 128}
```
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from compression_core.methods.base import MethodSpec

__all__ = ["Algorithm", "Format", "WQuantSpec"]


class Format(StrEnum):
    pack_quantized = "pack-quantized"  # the integers packed into int32 words: what vLLM's W4A16 kernels read
    int_quantized = "int-quantized"  # one int8 per weight with its scale and zero point: loads asymmetric


class Algorithm(StrEnum):
    rtn = "rtn"  # round-to-nearest, data-free
    gptq = "gptq"  # data-aware: the Hessian of each layer's inputs, error feedback


class WQuantSpec(MethodSpec):
    """Weight-only int quantization (RTN or GPTQ) written as a compressed-tensors checkpoint
    (`model.quantized.tar`): `pack-quantized` (symmetric), which transformers and vLLM load, or
    `int-quantized` (one int8 per weight, asymmetric too), which transformers loads."""

    field: ClassVar[str] = "wquant"
    title: ClassVar[str] = "weight-only quantization"
    description: ClassVar[str] = (
        "int2..int8 weights of a Hugging Face model's linear layers (RTN or GPTQ, symmetric or asymmetric), "
        "as a compressed-tensors checkpoint (needs model.hf; GPTQ and perplexity need the uploaded token ids)"
    )
    needs: ClassVar[tuple[str, ...]] = ("model",)
    hf: ClassVar[bool] = True
    requirement: ClassVar[str] = 'wquant: weight quantization needs `model` ({"hf": true})'
    checker: ClassVar[str] = "compression_core.methods.wquant.check:check_spec"

    bits: int = Field(default=4, ge=2, le=8, description="bits per weight (4: W4A16, 8: W8A16)")
    group_size: int | None = Field(
        default=128,
        description="columns sharing one scale: 32, 64 or 128; null: one scale per output channel",
    )
    symmetric: bool = Field(
        default=True, description="symmetric grid (no zero point); false: a zero point per group"
    )
    format: Format | None = Field(
        default=None,
        description="the compressed-tensors layout: pack-quantized (symmetric; the default) or int-quantized "
        "(one int8 per weight; the default and the only one for asymmetric: transformers 5.24 with "
        "compressed-tensors 0.20 does not load an asymmetric pack-quantized checkpoint back)",
    )
    algorithm: Algorithm = Field(default=Algorithm.rtn, description="rtn (data-free) or gptq (data-aware)")
    act_order: bool = Field(
        default=False, description="GPTQ: columns in order of decreasing Hessian diagonal"
    )
    dampening: float = Field(default=0.01, gt=0.0, le=1.0, description="GPTQ: λ of H + λ mean(diag H) I")
    calibration_rows: int = Field(
        default=128, ge=1, le=100_000, description="GPTQ: rows of the data's `train` token ids used"
    )
    ignore: list[str] = Field(
        default_factory=lambda: ["lm_head"],
        max_length=10_000,
        description="linear layers kept in float (names or fnmatch globs)",
    )

    only: list[str] | None = Field(
        default=None,
        max_length=10_000,
        description="quantize only the linear layers these names or fnmatch globs match (e.g. one decoder "
        "layer, `model.layers.3.*`: a search's sensitivity per layer); null: every one not in `ignore`",
    )

    @field_validator("group_size")
    @classmethod
    def _group(cls, value: int | None) -> int | None:
        if value is not None and value not in (32, 64, 128):
            raise ValueError("group_size: 32, 64, 128 or null (per output channel)")
        return value

    @model_validator(mode="after")
    def _layout(self) -> WQuantSpec:
        if self.format is None:
            self.format = Format.pack_quantized if self.symmetric else Format.int_quantized
        elif self.format is Format.pack_quantized and not self.symmetric:
            raise ValueError(
                "wquant: an asymmetric (zero-point) pack-quantized checkpoint does not load back in "
                "transformers 5.24 with compressed-tensors 0.20 (its packed zero points are not unpacked on "
                'load); use "format": "int-quantized" (one int8 per weight), or symmetric'
            )
        return self

    def summary(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
