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

from pathlib import Path
from typing import Any

from compression_core.sources.base import DenseWriter, SourceKind
from compression_core.sources.named_architecture import DENSE_FILE, NamedArchitectureSource

__all__ = ["SOURCE", "ShardedSource"]


class ShardedSource(NamedArchitectureSource):
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
