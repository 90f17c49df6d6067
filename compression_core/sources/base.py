"""What every model source is: the one place the pipeline learns what the input was.

A job's input may be a state dict plus an architecture name, a sharded checkpoint, an ONNX graph or a Hugging
Face checkpoint. Each is a `ModelSource` (one folder or module under `compression_core/sources/`, registered
in `compression_core/sources/__init__.py`); the pipeline plans once from the spec and the source
(`compression_core/job/plan.py`) and its stages only talk to this interface:

- tensors by name: `infos` (name, dtype, shape from the file's metadata, in reading order) and `load(name)`
  one at a time (streamed, data-free jobs), or `state_dict()` all at once (in-memory jobs);
- the trainable module: `module(state_dict)` builds it with those weights, or None when the source cannot
  (a state dict without an architecture name); `has_module` says which without building;
- the input signature: `input_signature()`, one sample's shape without the batch, when the source knows it;
- outputs in the source's own form: `write(out_dir, state_dict)` for an in-memory job's dense weights and
  `dense_writer(out_dir)` for a streamed job's (tensors written in place as they are decoded);
- the files it read: `input_files()` / `input_bytes()`, and `label`, the name `model.bin` records.

Sources open lazily: constructing one reads nothing, so planning (and `mcs check`) costs no I/O beyond what
detection needs, and the in-memory and streamed paths each read the file the way they always did.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from compression_core.streaming.source import TensorInfo

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["DenseWriter", "ModelSource", "SourceKind", "TensorInfo"]


class DenseWriter(Protocol):
    """Where a streamed job's decoded tensors go, each written in its place from any thread."""

    def write(self, name: str, tensor: torch.Tensor) -> None: ...

    def finish(self) -> list[Path]: ...

    def abort(self) -> None: ...


class ModelSource(abc.ABC):
    """One job's model input (see the module docstring). Subclasses set `kind` and implement the
    abstract methods; the rest has defaults that fit any source whose tensors can be listed and loaded."""

    kind: ClassVar[str]  # the registry's name for this kind of input, e.g. "state_dict"
    # tensors can be compressed one at a time, in memory that follows the largest tensor (data-free jobs)
    streamable: ClassVar[bool] = True
    # the deployment stage (architecture.json, ONNX export, int8, the deployment table) applies to its module
    deployable: ClassVar[bool] = True

    def __init__(self, path: Path, model: Any = None) -> None:
        self.path = Path(path)
        self.model_spec = model  # the spec's `model` (architecture name, kwargs, input_shape), if any

    # --- tensors ------------------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def infos(self) -> list[TensorInfo]:
        """Every tensor's name, shape and dtype, from metadata, in reading order."""

    @abc.abstractmethod
    def load(self, name: str) -> torch.Tensor:
        """One tensor, in memory the caller owns."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor, in reading order (what in-memory jobs compress)."""
        return {info.name: self.load(info.name) for info in self.infos}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {info.name: info.shape for info in self.infos}

    # --- the model --------------------------------------------------------------------------------------

    @property
    def has_module(self) -> bool:
        """Whether `module` can build a trainable module (decided without building it)."""
        return False

    def module(self, state_dict: Mapping[str, torch.Tensor] | None = None) -> nn.Module | None:
        """The trainable module holding `state_dict` (default: the source's own weights), or None when this
        source cannot build one. InputError when the weights do not fit it."""
        return None

    def input_signature(self) -> tuple[int, ...] | None:
        """One sample's input shape without the batch, when the source knows it (None otherwise)."""
        return None

    def architecture(self) -> dict[str, Any] | None:
        """What `architecture.json` records under `model` so that `load_model(out_dir)` rebuilds the module
        without the upload (the deployment stage adds `input_shape`). A kind other than `state_dict` adds
        `"source": kind` and registers `SourceKind.rebuild`. None: the source has no module."""
        return None

    def notes(self) -> dict[str, Any]:
        """What the job's metrics.json records about the input beyond `describe()` (e.g. the tensor names
        that could not be mapped back to the exporting model's parameter names); built after loading."""
        return {}

    # --- data and evaluation (data-aware jobs) ----------------------------------------------------------

    def load_data(self, data_spec: Any, data_path: Path | None, model: nn.Module) -> Any:
        """The job's data for this kind of model, checked against `model` (InputError when it does not fit).
        Default: a classification data set (`compression_core.data`), one batch run through the model."""
        from compression_core.data import check_against_model, load_data

        data = load_data(data_spec, data_path)
        check_against_model(data, model)
        return data

    def evaluate(self, model: nn.Module, data: Any, device: str) -> dict[str, Any]:
        """The reported evaluation of `model` on `data` (what `load_data` returned). Default: top-1 / top-5
        error on the data's reported split, tagged with its `split` and `n`."""
        from compression_core.evaluate import evaluate

        ev = evaluate(model, data.eval_set, device=device, num_classes=data.num_classes)
        return {**ev.to_dict(), **data.info(data.eval_split)}

    # --- outputs --------------------------------------------------------------------------------------

    @abc.abstractmethod
    def write(self, out_dir: Path, state_dict: Mapping[str, torch.Tensor]) -> list[Path]:
        """An in-memory job's dense weights in the source's own form; returns the files written."""

    def onnx_graph(self, out_dir: Path) -> Path | None:
        """The `model.onnx` that `write` put in `out_dir` in the source's own form (an ONNX source's graph
        with the job's weights), which the deployment stage checks instead of exporting the module; None:
        the deployment stage exports the module."""
        return None

    def original_onnx(self, target: Path) -> bool:
        """Write the upload's own graph to `target` for the deployment table's `original (ONNX)` row (an ONNX
        source: the uploaded graph, normalized to run on any batch); False: the stage exports the module."""
        return False

    def write_checkpoint(
        self, target: Path, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]
    ) -> Path:
        """A checkpoint in the source's own form holding other `tensors` (e.g. packed integers) and extra
        `config` entries (e.g. a `quantization_config`), with the input's other files carried;
        NotImplementedError when the kind has no such form."""
        raise NotImplementedError(f"a {self.kind} source writes no checkpoint of its own form")

    def dense_writer(self, out_dir: Path) -> DenseWriter:
        """A streamed job's dense outputs, written in place as tensors are decoded."""
        raise NotImplementedError(f"a {self.kind} source is not streamed")

    # --- the files read ---------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """The input's name as `model.bin`'s metadata records it."""
        return self.path.name

    def input_files(self) -> list[Path]:
        return [self.path]

    def input_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.input_files())

    def close(self) -> None:  # noqa: B027 - a source without handles has nothing to release
        """Release file handles and mappings (the source can be read again afterwards)."""

    def __enter__(self) -> ModelSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What the plan prints about the input."""
        return {
            "kind": self.kind,
            "input": self.path.name,
            "module": self.has_module,
            "streamable": self.streamable,
        }


@dataclass(frozen=True)
class SourceKind:
    """A registered kind of input: `claims(path, model_spec)` says from the path (and the spec's `model`)
    whether the input is of this kind, reading at most a small file (a config, a magic number); `open`
    builds the source (lazily: reading nothing yet). Kinds are asked from the highest `priority` down, so
    a specific kind (a Hugging Face folder holding `config.json` and an index) is asked before a general one
    (any folder holding an index), and the state-dict kind, priority 0, takes whatever is left."""

    name: str
    open: Callable[[Path, Any], ModelSource]
    claims: Callable[[Path, Any], bool]
    priority: int = 0
    # the API's check of an upload at `POST /jobs`, before anything is queued: from metadata only (headers,
    # an index, a protobuf's declared sizes), never the tensors' data; InputError naming what is wrong.
    # None: listing the source's `infos` is the check.
    check: Callable[[Path], None] | None = None
    # the API's check of the job's data file for this kind of model, `check_data(data_path, model_path)`
    # (headers only; InputError); None: the data is checked when the worker loads it
    check_data: Callable[[Path, Path], None] | None = None
    # `load_model(out_dir)`'s rebuild of the unpruned module from architecture.json's `model` entry (whose
    # `source` names this kind) and the files beside it; None: the kind records no `source` (`arch` and
    # `kwargs` are built by `compression_core.models.build_model`)
    rebuild: Callable[[Mapping[str, Any], Path], nn.Module] | None = None
    # one sample's input shape (without the batch; None for a symbolic dimension) as a graph-carrying input
    # declares it, from metadata: what `POST /jobs` fits the data's samples to when no module is probed
    sample_shape: Callable[[Path], tuple[int | None, ...] | None] | None = None
    # `POST /jobs`' check of a job that evaluates or trains on data with this model (the spec has `data`):
    # `(model path, data path or None)` -> (request field, message) problems, from metadata only (a language
    # model: token ids sent, config.json a causal LM); None: nothing beyond `check_data`
    check_job: Callable[[Path, Path | None], list[tuple[str, str]]] | None = None
