"""Static int8 with ONNX Runtime (QDQ): calibrate on the job's data, quantize, name what stayed float.

Weights are symmetric int8 per output channel, activations uint8 with ranges from `calibration_samples`
training inputs (ONNX Runtime's recommended U8S8 for x86). The QDQ form keeps QuantizeLinear /
DequantizeLinear pairs around each quantized operator, which onnxruntime fuses into integer kernels; the
file stores the weights as int8 initializers. Why ONNX Runtime and not PT2E: see methods/int8/spec.py.
"""

from __future__ import annotations

import fnmatch
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from compression_core.errors import CompressionError

__all__ = ["WEIGHT_OPS", "int8_layers", "module_name", "quantize_int8"]

log = logging.getLogger(__name__)

WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CALIBRATION_BATCH = 32


def module_name(node_name: str) -> str:
    """The PyTorch module a TorchScript-exported node came from: "/layer1/layer1.0/conv1/Conv" ->
    "layer1.0.conv1" (each scope part is either a child's name or the full name of the child)."""
    parts = [p for p in node_name.split("/") if p][:-1]
    current = ""
    for part in parts:
        current = part if (not current or part.startswith(current + ".")) else f"{current}.{part}"
    return current or node_name


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a tensor of calibration inputs."""

    def __init__(self, input_name: str, inputs: torch.Tensor):
        self.input_name = input_name
        self.batches: Iterator[torch.Tensor] = iter(inputs.split(CALIBRATION_BATCH))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch.cpu().numpy().astype(np.float32)}

    def rewind(self) -> None:  # called by some calibrators; one pass is all MinMax needs
        pass


class Int8Options(Protocol):
    """What quantization reads from the `int8` spec (compression_core/methods/int8/spec.py)."""

    calibration_samples: int
    per_channel: bool
    exclude: list[str]

    @property
    def calibration(self) -> Any: ...


def quantize_int8(
    fp32_path: str | Path, out_path: str | Path, calibration: torch.Tensor, spec: Int8Options
) -> dict[str, Any]:
    """Write the int8 QDQ model; returns which weight layers were quantized and which stayed float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod as OrtCalibration
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    graph = onnx.load(str(fp32_path)).graph
    excluded = [
        n.name
        for n in graph.node
        if spec.exclude and any(fnmatch.fnmatchcase(module_name(n.name), p) for p in spec.exclude)
    ]
    methods = {
        "minmax": OrtCalibration.MinMax,
        "entropy": OrtCalibration.Entropy,
        "percentile": OrtCalibration.Percentile,
    }
    samples = calibration[: spec.calibration_samples]
    with tempfile.TemporaryDirectory(prefix="mcs-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:  # shape inference can fail on exotic graphs: quantize the plain export
            log.warning("int8: onnxruntime pre-processing failed (%s); quantizing the export as it is", exc)
            prepared = fp32_path
        try:
            quantize_static(
                str(prepared),
                str(out_path),
                _Reader(graph.input[0].name, samples),
                quant_format=QuantFormat.QDQ,
                per_channel=spec.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[str(getattr(spec.calibration, "value", spec.calibration))],
                nodes_to_exclude=excluded or None,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        except Exception as exc:  # onnxruntime raises plain exceptions; say which stage failed
            raise CompressionError(f"int8 quantization failed: {exc}") from exc
    report = int8_layers(out_path)
    report.update(
        calibration_samples=int(len(samples)), per_channel=spec.per_channel, method="onnxruntime QDQ static"
    )
    report["excluded"] = sorted({module_name(n) for n in excluded})
    return report


def int8_layers(path: str | Path) -> dict[str, Any]:
    """Weight layers (Conv/Gemm/MatMul) of a QDQ model whose weight arrives through DequantizeLinear from
    an int8 initializer ("quantized") and those that still compute in float ("float", with the op)."""
    import onnx

    graph = onnx.load(str(path)).graph
    int8 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
    produced_by = {out: node for node in graph.node for out in node.output}
    quantized: list[str] = []
    floating: list[dict[str, str]] = []
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2:
            continue
        source = produced_by.get(node.input[1])
        is_int8 = source is not None and source.op_type == "DequantizeLinear" and source.input[0] in int8
        name = module_name(node.name)
        if is_int8:
            quantized.append(name)
        else:
            floating.append(
                {
                    "layer": name,
                    "op": node.op_type,
                    "reason": "weight not quantized (excluded or unsupported)",
                }
            )
    return {"quantized": quantized, "float": floating, "int8_initializers": len(int8)}


def int8_initializer_count(path: str | Path) -> int:
    import onnx

    return sum(1 for i in onnx.load(str(path)).graph.initializer if i.data_type == onnx.TensorProto.INT8)


def onnx_weight_ops(path: str | Path) -> list[tuple[str, str]]:
    """(module name, op type) of every weight operator of an ONNX file, in graph order."""
    import onnx

    return [
        (module_name(n.name), n.op_type) for n in onnx.load(str(path)).graph.node if n.op_type in WEIGHT_OPS
    ]


def quantizable_ops() -> Sequence[str]:
    """Operator types onnxruntime's QDQ quantizer handles (the rest stays float)."""
    from onnxruntime.quantization.registry import QDQRegistry

    return sorted(QDQRegistry)
