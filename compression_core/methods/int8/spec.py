"""The top-level `int8` field: post-training static int8 for CPU inference (no torch import).

Why ONNX Runtime's static quantization (QDQ) and not PyTorch's PT2E flow: in torch 2.14 the PT2E entry
points (`prepare_pt2e` / `X86InductorQuantizer`) left `torch.ao` for the separate `torchao` package, so PT2E
would add a dependency and its result runs only through torch.compile/inductor, while the QDQ model runs in
the same onnxruntime that checks and times `model.onnx` (measured in benchmarks/bench_deploy.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from compression_core.methods.base import MethodSpec

__all__ = ["CalibrationMethod", "Int8Spec", "MAX_CALIBRATION_SAMPLES"]

MAX_CALIBRATION_SAMPLES = 10_000


class CalibrationMethod(StrEnum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class Int8Spec(MethodSpec):
    """Static int8: weights per channel (symmetric int8), activations uint8 from calibration ranges."""

    field: ClassVar[str] = "int8"
    title: ClassVar[str] = "static int8"
    description: ClassVar[str] = "post-training static int8 of model.onnx (needs model and data)"
    needs: ClassVar[tuple[str, ...]] = ("model", "data")
    requirement: ClassVar[str] = "int8: static int8 needs `model` (to export) and `data` (to calibrate)"

    calibration_samples: int = Field(
        default=256,
        ge=1,
        le=MAX_CALIBRATION_SAMPLES,
        description="training samples run through the model to fix activation ranges",
    )
    calibration: CalibrationMethod = Field(default=CalibrationMethod.minmax, description="range estimator")
    per_channel: bool = Field(default=True, description="one weight scale per output channel")
    exclude: list[str] = Field(
        default_factory=list, max_length=10_000, description="layer names (globs) kept in float"
    )
