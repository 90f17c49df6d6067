"""A checkpoint of weights only, whose module is the architecture the spec names (`model.arch`: a built-in,
a torchvision classifier or an operator's `mcs.models` plug-in). State-dict files and sharded checkpoints
share this: the weights come from the streaming reader, the module from the name, and the in-memory output
is `model.pth` like a state dict."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compression_core.sources.reader_backed import ReaderBackedSource

if TYPE_CHECKING:
    import torch
    from torch import nn


__all__ = ["DENSE_FILE", "NamedArchitectureSource", "architecture_module", "architecture_signature"]

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


class NamedArchitectureSource(ReaderBackedSource):
    """Weights from the reader; the module, input signature and architecture record from `model_spec`."""

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
