"""A sharded checkpoint: a `*.safetensors.index.json` and the shards it names, or the folder holding them
(or a folder holding a single `.safetensors`). The service unpacks an uploaded plain tar into such a folder
(`service/model_tar.py`) before the worker sees it.

Reading: one tensor at a time through `compression_core.streaming.source.SafetensorsSource` (headers read
and checked up front, data through remapped `safe_open` handles), or all of them for in-memory jobs.
Writing, streamed: the shards under their own names with the input's headers, and the index, in the input's
layout (`streaming.dense_out.ShardedSafetensorsWriter`); in memory (a data-aware job, whose trainable
module may have changed shape), `model.pth` like a state dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compression_core.sources.base import DenseWriter, SourceKind
from compression_core.sources.reader_backed import ReaderBackedSource
from compression_core.sources.state_dict import DENSE_FILE, architecture_module, architecture_signature

if TYPE_CHECKING:
    import torch
    from torch import nn


__all__ = ["SOURCE", "ShardedSource"]


class ShardedSource(ReaderBackedSource):
    """A sharded safetensors checkpoint (see the module docstring)."""

    kind = "sharded"

    @property
    def label(self) -> str:
        reader = self._opened()
        return reader.index.name if reader.index is not None else reader.shards[0]

    def input_files(self) -> list[Path]:
        reader = self._opened()
        folder = reader.index.parent if reader.index is not None else self.path
        return [folder / shard for shard in reader.shards]

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
        from compression_core.streaming.dense_out import ShardedSafetensorsWriter, TorchFileWriter

        reader = self._opened()
        if not reader.sharded:  # a folder holding one .safetensors: model.pth, as for a single file
            return TorchFileWriter(Path(out_dir) / DENSE_FILE, reader.infos)
        assert reader.headers
        return ShardedSafetensorsWriter(Path(out_dir), reader.headers, reader.index)


def _claims(path: Path, model: Any) -> bool:
    return path.is_dir() or path.name.endswith(".json")


def _check(path: Path) -> None:
    """The index and every shard's header, read without the tensors' data."""
    from compression_core.streaming.source import open_source

    open_source(path).close()


SOURCE = SourceKind("sharded", ShardedSource, _claims, priority=10, check=_check)
