"""A state dict in one file (`.safetensors`, or `.pth`/`.pt`/`.bin`/`.ckpt` read with `weights_only=True`),
plus the spec's architecture name (`model.arch`: a built-in, a torchvision classifier or an operator's
`mcs.models` plug-in) when the job needs the trainable module.

Reading: in memory through `compression_core.io.load_state_dict` (metadata checked before the tensors are
loaded); streamed through `compression_core.streaming.source` (one tensor at a time from a mapping).
Writing: `model.pth` (torch's zip format), in memory with `io.save_state_dict`, streamed in place by
`streaming.dense_out.TorchFileWriter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compression_core.sources.base import DenseWriter, SourceKind
from compression_core.sources.named_architecture import DENSE_FILE, NamedArchitectureSource

if TYPE_CHECKING:
    import torch


__all__ = ["SOURCE", "StateDictSource"]


class StateDictSource(NamedArchitectureSource):
    """One state-dict file; the module is the spec's named architecture (see the module docstring)."""

    kind = "state_dict"

    def weights_path(self) -> Path:
        from compression_core.inspect_upload import inspect_state_dict

        inspect_state_dict(self.path)  # an upload's metadata is checked before any tensor is mapped
        return self.path

    def state_dict(self) -> dict[str, torch.Tensor]:
        from compression_core.io import load_state_dict

        return load_state_dict(self.path)

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
