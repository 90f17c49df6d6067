"""The int8 method's run in the deployment stage: quantize `model.onnx` into `model.int8.onnx`, check it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compression_core.errors import CompressionError
from compression_core.methods.int8.spec import Int8Spec

CHECK_SAMPLES = 8


def run(config: Int8Spec, stage: Any, out_dir: Path) -> dict[str, Any]:
    """`metrics.json` → `deployment.int8`: which layers are int8 and which stayed float, and the check.

    `stage` is the job's `DeployStage` (its job's data calibrates; its deployed model is the reference)."""
    from compression_core.deploy.int8 import quantize_int8
    from compression_core.deploy.onnx_export import check_onnx

    data = stage.job.data
    if data is None:
        raise CompressionError("int8 needs the job's data to calibrate")
    section = quantize_int8(
        out_dir / "model.onnx", out_dir / "model.int8.onnx", data.train.tensors[0].float(), config
    )
    real = data.eval_set.tensors[0][:CHECK_SAMPLES].float()
    # int8 differs from float by design: the check is that it runs and gives the output's shape; the
    # differences are reported, and its accuracy is in the deployment table
    check = check_onnx(stage.deployed, out_dir / "model.int8.onnx", real, rtol=float("inf"))
    if "error" in check:
        raise CompressionError(f"model.int8.onnx does not run like model.pth: {check['error']}")
    section["check"] = dict(check)
    return section
