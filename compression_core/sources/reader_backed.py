"""A model source whose tensors come from the streaming reader (`compression_core.streaming.source`): opened
on the first read, after the source's own checks, and its memory mappings dropped on `close` (a later read
maps the file again). State-dict files, sharded checkpoints and Hugging Face checkpoints read this way."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from compression_core.sources.base import ModelSource, TensorInfo

if TYPE_CHECKING:
    from compression_core.streaming.source import Source

__all__ = ["ReaderBackedSource"]


class ReaderBackedSource(ModelSource):
    def __init__(self, path: Path, model: Any = None) -> None:
        super().__init__(path, model)
        self._reader: Source | None = None

    def weights_path(self) -> Path:
        """The file or folder the reader opens, after whatever must be checked before a tensor is mapped."""
        return self.path

    def _opened(self) -> Source:
        if self._reader is None:
            from compression_core.streaming.source import open_source

            self._reader = open_source(self.weights_path())
        return self._reader

    @property
    def infos(self) -> list[TensorInfo]:
        return self._opened().infos

    def load(self, name: str) -> torch.Tensor:
        return self._opened().load(name)

    def close(self) -> None:
        if self._reader is not None:  # drops the mappings; a later read maps the file again
            self._reader.close()
