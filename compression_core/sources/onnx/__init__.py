"""An ONNX graph as a model source: a `.onnx` file with its weights inside, checked from the protobuf
(`check.py`: parsed, never executed), normalized (`normalize.py`), converted to a trainable module of
standard layers named by the graph's initializers (`convert.py`, onnx2torch plus `converters.py`), and
written back as ONNX (`write.py`). See docs/bring-your-own-model.md.

Outputs: `model.pth` (keys = the initializer names, i.e. the exporting model's parameter names), and
- shape-preserving jobs: `model.onnx`, the normalized uploaded graph with the job's weights;
- structured pruning: `architecture.onnx` (the unpruned graph without its weights, what `load_model`
  rebuilds from) and, from the deployment stage, `model.onnx` exported from the smaller module.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compression_core.errors import InputError
from compression_core.sources.base import ModelSource, SourceKind, TensorInfo

if TYPE_CHECKING:
    import onnx
    import torch
    from torch import nn

    from compression_core.sources.onnx.check import CheckedGraph
    from compression_core.sources.onnx.convert import Converted

__all__ = ["SOURCE", "OnnxSource"]

log = logging.getLogger(__name__)

MODEL_ONNX, ARCHITECTURE_ONNX, DENSE_FILE = "model.onnx", "architecture.onnx", "model.pth"
CONVERSION_RTOL = 1e-4  # the converted module against onnxruntime on the normalized graph


class OnnxSource(ModelSource):
    """One `.onnx` file (see the module docstring)."""

    kind = "onnx"
    streamable = False  # the weights come out of one protobuf, converted together

    def __init__(self, path: Path, model: Any = None) -> None:
        super().__init__(path, model)
        self._graph: onnx.ModelProto | None = None
        self._checked: CheckedGraph | None = None
        self._converted: Converted | None = None
        self._written: str | None = None  # which graph file `write` put beside model.pth

    def _normalized(self) -> onnx.ModelProto:
        if self._graph is None:
            from compression_core.sources.onnx.check import check_normalized, read_checked
            from compression_core.sources.onnx.normalize import normalize

            model, self._checked = read_checked(self.path)
            graph = normalize(model)
            check_normalized(graph)  # what folding left is convertible
            self._graph = graph
        return self._graph

    def converted(self) -> Converted:
        """The converted module and its bindings (built once, checked against onnxruntime)."""
        if self._converted is None:
            from compression_core.sources.onnx.convert import convert_graph

            graph = self._normalized()
            converted = convert_graph(graph)
            signature = self.input_signature()
            verify(converted.module, graph, signature)
            assert self._checked is not None
            exported = self._checked.input_shape[0]  # normalize's batch rewrites, checked on the upload
            if isinstance(exported, int) and 1 <= exported <= 8:
                verify(converted.module, self.path, signature, batch=exported)
            if converted.unmapped:
                log.warning(
                    "%s: %d tensors are not named by a PyTorch parameter name: %s (BatchNorms folded "
                    "into the convolutions? export with optimize=False or do_constant_folding=False to "
                    "keep model.pth loadable into your class; docs/bring-your-own-model.md)",
                    self.path.name,
                    len(converted.unmapped),
                    ", ".join(converted.unmapped[:10]),
                )
            self._converted = converted
        return self._converted

    @property
    def infos(self) -> list[TensorInfo]:
        return [
            TensorInfo(name, tuple(t.shape), t.dtype, self.path.name)
            for name, t in self.converted().module.state_dict().items()
        ]

    def load(self, name: str) -> torch.Tensor:
        return self.converted().module.state_dict()[name].detach().clone()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.converted().module.state_dict().items()}

    @property
    def has_module(self) -> bool:
        return True

    def module(self, state_dict: Mapping[str, torch.Tensor] | None = None) -> nn.Module | None:
        from compression_core.models import load_into

        module = copy.deepcopy(self.converted().module)
        return module if state_dict is None else load_into(module, state_dict)

    def input_signature(self) -> tuple[int, ...] | None:
        if self.model_spec is not None and self.model_spec.input_shape:
            return tuple(self.model_spec.input_shape)
        self._normalized()
        assert self._checked is not None
        rest = self._checked.input_shape[1:]
        return None if any(d is None for d in rest) else tuple(int(d) for d in rest if d is not None)

    def architecture(self) -> dict[str, Any] | None:
        return {"source": self.kind, "arch": "onnx", "kwargs": {"graph": self._written or MODEL_ONNX}}

    def notes(self) -> dict[str, Any]:
        converted = self.converted()
        return {"unmapped_names": list(converted.unmapped)} if converted.unmapped else {}

    def write(self, out_dir: Path, state_dict: Mapping[str, torch.Tensor]) -> list[Path]:
        from compression_core.io import save_state_dict
        from compression_core.sources.onnx.write import patched, save, weightless

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / DENSE_FILE
        save_state_dict(state_dict, target)
        converted, graph = self.converted(), self._normalized()
        graph_out = patched(graph, converted.bindings, state_dict)
        if graph_out is not None:  # shape-preserving: the uploaded graph with the job's weights
            self._written = MODEL_ONNX
            return [target, save(graph_out, out_dir / MODEL_ONNX)]
        self._written = ARCHITECTURE_ONNX  # pruned: the deployment stage exports the smaller module
        return [target, save(weightless(graph, converted.bindings), out_dir / ARCHITECTURE_ONNX)]

    def original_onnx(self, target: Path) -> bool:
        Path(target).write_bytes(self._normalized().SerializeToString())
        return True

    def onnx_graph(self, out_dir: Path) -> Path | None:
        return Path(out_dir) / MODEL_ONNX if self._written == MODEL_ONNX else None


def verify(
    module: nn.Module, graph: onnx.ModelProto | Path, signature: tuple[int, ...] | None, batch: int = 2
) -> None:
    """The converted module computes what onnxruntime computes on the graph (the normalized one, on a batch
    of 2; or the uploaded file, on the batch it was exported with), InputError otherwise."""
    import tempfile

    import numpy as np
    import torch

    from compression_core.deploy.onnx_export import ort_session

    if signature is None:
        return
    x = torch.randn(batch, *signature, generator=torch.Generator().manual_seed(0))
    module.eval()
    with torch.no_grad():
        expected = module(x)
    if not isinstance(expected, torch.Tensor):
        raise InputError("the converted ONNX graph does not return one tensor")
    with tempfile.TemporaryDirectory(prefix="mcs-onnx-") as tmp:
        path = graph if isinstance(graph, Path) else Path(tmp) / "graph.onnx"
        if not isinstance(graph, Path):
            path.write_bytes(graph.SerializeToString())
        session = ort_session(path, torch.get_num_threads())
        got = session.run(None, {session.get_inputs()[0].name: x.numpy().astype(np.float32)})[0]
    diff = float(np.abs(got - expected.numpy()).max()) if got.shape == tuple(expected.shape) else float("inf")
    scale = float(np.abs(got).max()) if got.size else 0.0
    if not diff <= CONVERSION_RTOL * scale + 1e-6:
        which = "the uploaded graph on its exported batch" if isinstance(graph, Path) else "the graph"
        raise InputError(
            f"the converted graph does not compute what onnxruntime computes on {which} (max difference "
            f"{diff:.3g}, output scale {scale:.3g}); this graph is not supported"
        )


def _claims(path: Path, model: Any) -> bool:
    return path.suffix.lower() == ".onnx" and not path.is_dir()


def _check(path: Path) -> None:
    from compression_core.sources.onnx.check import checked_graph

    checked_graph(path)


def _sample_shape(path: Path) -> tuple[int | None, ...]:
    """The graph input's declared shape without the batch dimension (the protobuf, checked)."""
    from compression_core.sources.onnx.check import checked_graph

    return checked_graph(path).input_shape[1:]


def _rebuild(model: Mapping[str, Any], out_dir: Path) -> nn.Module:
    """The unpruned module from the graph file the job wrote (`model.onnx` or `architecture.onnx`)."""
    import onnx
    from google.protobuf.message import DecodeError

    from compression_core.sources.onnx.check import MAX_BYTES
    from compression_core.sources.onnx.convert import convert_graph
    from compression_core.sources.onnx.write import filled

    name = str((model.get("kwargs") or {}).get("graph", MODEL_ONNX))
    if name not in (MODEL_ONNX, ARCHITECTURE_ONNX):
        raise InputError(
            f"architecture.json: the graph must be {MODEL_ONNX} or {ARCHITECTURE_ONNX}, not {name!r}"
        )
    path = Path(out_dir) / name
    if not path.is_file() or path.stat().st_size > MAX_BYTES:
        raise InputError(f"{path}: the job's graph file is missing or too large")
    graph = onnx.ModelProto()
    try:
        graph.ParseFromString(path.read_bytes())
    except DecodeError as error:
        raise InputError(f"{path}: not a readable ONNX protobuf: {error}") from None
    return convert_graph(filled(graph)).module


SOURCE = SourceKind(
    "onnx", OnnxSource, _claims, priority=5, check=_check, rebuild=_rebuild, sample_shape=_sample_shape
)
