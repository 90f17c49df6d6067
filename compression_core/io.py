"""Reading and writing state dicts without ever running code from an uploaded file.

`.safetensors` is read with safetensors (no code at all); `.pth`/`.pt`/`.bin` only through
`torch.load(..., weights_only=True)`, whose restricted unpickler refuses any callable that is not a tensor
building block. Every failure becomes an `InputError` that says what was found.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from compression_core.errors import InputError
from compression_core.inspect_upload import inspect_state_dict, refused_pickle, unwrap_state_dict

TORCH_SUFFIXES = {".pth", ".pt", ".bin", ".ckpt"}
SAFETENSORS_SUFFIXES = {".safetensors"}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat `name -> tensor` dict from a safetensors or torch file (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    inspect_state_dict(path)  # from metadata: refuse what would expand past the file before loading it
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        loaded: object = _load_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        loaded = _load_torch(path)
    else:
        raise InputError(
            f"{path.name}: unknown extension {suffix or '(none)'}; expected a state dict "
            "(.safetensors, .pth, .pt, .bin, .ckpt)"
        )
    return as_state_dict(loaded, source=path.name)


def as_state_dict(obj: object, *, source: str = "input") -> dict[str, torch.Tensor]:
    """Check a loaded object is a non-empty mapping of str -> tensor, unwrapping {"state_dict": ...}."""
    return {
        key: value.detach().cpu().contiguous() for key, value in unwrap_state_dict(obj, source=source).items()
    }


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise InputError(f"{path.name}: not a readable safetensors file ({_first_line(error)})") from None


def _load_torch(path: Path) -> object:
    return load_torch_file(path)


def load_torch_file(path: Path, *, mmap: bool = False) -> object:
    """`torch.load(weights_only=True)`; with `mmap`, storages stay mapped from the file (streaming
    sources read one tensor at a time); a legacy non-zip file, which cannot be mapped, is read whole."""
    try:
        with warnings.catch_warnings():  # e.g. "unusual pickle protocol": the error, if any, says enough
            warnings.simplefilter("ignore", UserWarning)
            if mmap and zipfile.is_zipfile(path):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise refused_pickle(path, error) from None
    except (
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
        zipfile.BadZipFile,
        KeyError,
        AttributeError,
        TypeError,
        IndexError,
        UnicodeDecodeError,
    ) as error:
        raise InputError(f"{path.name}: not a readable PyTorch file ({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line[:300]


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Write `.safetensors` or a torch file atomically (temp file in the same folder, then os.replace)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAFETENSORS_SUFFIXES | TORCH_SUFFIXES:
        raise InputError(f"{path.name}: cannot write extension {suffix or '(none)'}")
    tensors = {name: t.detach().cpu().contiguous() for name, t in state_dict.items()}

    def write(tmp: Path) -> None:
        if suffix in SAFETENSORS_SUFFIXES:
            from safetensors.torch import save_file

            save_file(tensors, str(tmp))
        else:
            save_torch_file(tensors, tmp)

    atomic_write(path, write)


def save_torch_file(obj: object, path: str | Path) -> None:
    """`torch.save` through an open file: torch then names the archive's folder "archive" instead of after
    the file, so the bytes depend on the tensors alone (not on a random temp name, nor on `-o decoded.pth`
    versus `model.pth`): the same job gives the same `model.pth` and `mcs decode` gives it bit for bit."""
    with open(path, "wb") as handle:
        torch.save(obj, handle)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)` then move the temp file over `path`, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
