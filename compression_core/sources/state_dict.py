"""A state dict in one file (`.safetensors`, or `.pth`/`.pt`/`.bin`/`.ckpt` read with `weights_only=True`),
plus the spec's architecture name (`model.arch`: a built-in, a torchvision classifier or an operator's
`mcs.models` plug-in) when the job needs the trainable module.

Reading: in memory through `compression_core.io.load_state_dict` (metadata checked before the tensors are
loaded); streamed through `compression_core.streaming.source` (one tensor at a time from a mapping).
Writing: `model.pth` (torch's zip format), in memory with `io.save_state_dict`, streamed in place by
`streaming.dense_out.TorchFileWriter`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compression_core.sources.base import DenseWriter, SourceKind
from compression_core.sources.reader_backed import ReaderBackedSource

if TYPE_CHECKING:
    import torch
    from torch import nn


__all__ = ["SOURCE", "StateDictSource", "architecture_module", "architecture_signature"]

DENSE_FILE = "model.pth"


def architecture_module(model_spec: Any, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """The named architecture holding `state_dict` (refused from a meta-device probe before anything is
    allocated when the weights do not fit it)."""
    from compression_core.models import build_model, load_into

    return load_into(build_model(model_spec, fits=state_dict), state_dict)


def architecture_signature(model_spec: Any) -> tuple[int, ...] | None:
    """The spec's `input_shape`, else what the architecture's name tells."""
    from compression_core.models.inputs import known_input_shape

    if model_spec is None:
        return None
    if model_spec.input_shape:
        return tuple(model_spec.input_shape)
    return known_input_shape(model_spec.arch, dict(model_spec.kwargs))


class StateDictSource(ReaderBackedSource):
    """One state-dict file; the module is the spec's named architecture (see the module docstring)."""

    kind = "state_dict"

    def weights_path(self) -> Path:
        from compression_core.inspect_upload import inspect_state_dict

        inspect_state_dict(self.path)  # an upload's metadata is checked before any tensor is mapped
        return self.path

    def state_dict(self) -> dict[str, torch.Tensor]:
        from compression_core.io import load_state_dict

        return load_state_dict(self.path)

    @property
    def has_module(self) -> bool:
        return self.model_spec is not None

    def module(self, state_dict: Mapping[str, torch.Tensor] | None = None) -> nn.Module | None:
        if self.model_spec is None:
            return None
        return architecture_module(self.model_spec, self.state_dict() if state_dict is None else state_dict)

    def input_signature(self) -> tuple[int, ...] | None:
        return architecture_signature(self.model_spec)

    def architecture(self) -> dict[str, Any] | None:
        return None if self.model_spec is None else self.model_spec.model_dump(mode="json", exclude={"hf"})

    def write(self, out_dir: Path, state_dict: Mapping[str, torch.Tensor]) -> list[Path]:
        from compression_core.io import save_state_dict

        target = Path(out_dir) / DENSE_FILE
        save_state_dict(state_dict, target)
        return [target]

    def dense_writer(self, out_dir: Path) -> DenseWriter:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        from compression_core.streaming.dense_out import TorchFileWriter

        return TorchFileWriter(Path(out_dir) / DENSE_FILE, self.infos)


def _claims(path: Path, model: Any) -> bool:
    """Any path that is not a folder: the fallback kind (lowest priority), whose readers name what is wrong
    with a file no other kind claims (unknown extension, missing file)."""
    return not path.is_dir()


def _check(path: Path) -> None:
    """From the header (safetensors) or the pickle's metadata (torch, `weights_only`): the declared sizes,
    dtypes and views, refusing what would expand past the file, without loading the tensors."""
    from compression_core.inspect_upload import inspect_state_dict

    inspect_state_dict(path)


SOURCE = SourceKind("state_dict", StateDictSource, _claims, priority=0, check=_check)
