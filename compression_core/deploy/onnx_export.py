"""ONNX export of the deployed module, and the check that onnxruntime computes what PyTorch computes.

We export with PyTorch's TorchScript-based exporter (`dynamo=False`): on the classifiers we ship it is
4-5x faster than the dynamo exporter (2.9 s against 12.5 s for ResNet-18 here) and gives the same graph
for a plain `nn.Module`; the batch dimension is dynamic, so the same file serves batch 1 and throughput
batches. Exporting never loads anything: it traces the module we built ourselves.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compression_core.errors import CompressionError

__all__ = ["OPSET", "OnnxCheck", "export_onnx", "check_onnx", "ort_session"]

log = logging.getLogger(__name__)

OPSET = 17
INPUT, OUTPUT = "input", "logits"


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Write `model` (eval mode, float32, CPU) as ONNX with a dynamic batch dimension."""
    path = Path(path)
    was = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter warns about its own deprecation on every call
            torch.onnx.export(
                model,
                (example.cpu(),),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            )
    except Exception as exc:  # the exporter raises many types; the job must say it was the export
        raise CompressionError(f"ONNX export failed: {exc}") from exc
    finally:
        model.train(was)
    return path


def ort_session(path: str | Path, threads: int) -> Any:
    """An onnxruntime CPU session with `threads` intra-op threads (and one inter-op thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxCheck(dict[str, Any]):
    """max_abs_diff, max_rel_diff (relative to the largest |PyTorch output|), samples, ok."""


def check_onnx(
    model: nn.Module, path: str | Path, inputs: torch.Tensor, *, rtol: float = 1e-4, threads: int = 1
) -> OnnxCheck:
    """Run `inputs` through PyTorch and onnxruntime; ok when max|a - b| <= rtol * max|a| (+1e-6)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        expected = model(inputs.cpu()).numpy()
    model.train(was)
    session = ort_session(path, threads)
    got = session.run(None, {session.get_inputs()[0].name: inputs.cpu().numpy().astype(np.float32)})[0]
    if got.shape != expected.shape:
        return OnnxCheck(ok=False, samples=len(inputs), error=f"shape {got.shape} != {expected.shape}")
    diff = float(np.abs(got - expected).max())
    scale = float(np.abs(expected).max())
    return OnnxCheck(
        ok=diff <= rtol * scale + 1e-6,
        samples=int(len(inputs)),
        max_abs_diff=diff,
        max_rel_diff=diff / scale if scale > 0 else diff,
        rtol=rtol,
    )
