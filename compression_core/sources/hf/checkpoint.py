"""A Hugging Face checkpoint's files, as uploaded: a folder, or a plain tar of one (at the top or in one
folder).

What is read: `config.json` (at most `MAX_CONFIG_BYTES`, JSON nested at most `MAX_JSON_DEPTH`), the weights
(`model.safetensors`, or `model.safetensors.index.json` and its shards), and, carried to the output untouched,
the tokenizer files and `generation_config.json`. Any other member of a tar refuses it (links, devices,
deeper paths, other names), as the sharded tar does (service/model_tar.py). A tar is never unpacked at the
API: `POST /jobs` reads `config.json` and the safetensors headers at their offsets inside it; the worker
extracts the named members into a private folder (`materialize`), at most the tar's own size.

The architecture is data: `config.json`'s `model_type` must be one transformers ships and its single
`architectures` entry a model class transformers exports; an `auto_map` (code shipped with the checkpoint)
is refused by name, and `trust_remote_code` is never set anywhere.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from compression_core.errors import InputError, UnsupportedModel
from compression_core.jsonbound import JSONDepthError, loads_bounded

__all__ = [
    "CONFIG",
    "TOKENIZER_FILES",
    "Checkpoint",
    "is_checkpoint",
    "model_class",
]

CONFIG = "config.json"
MAX_CONFIG_BYTES = 1 << 20
MAX_JSON_DEPTH = 32
MAX_MEMBERS = 10_000
# carried to the output as they came (never parsed here)
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "tokenizer.model",
        "spiece.model",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "chat_template.jinja",
        "chat_template.json",
        "generation_config.json",
    }
)
_WEIGHTS = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$|^model\.safetensors\.index\.json$")


def _allowed(name: str) -> bool:
    return name == CONFIG or name in TOKENIZER_FILES or bool(_WEIGHTS.match(name))


def _tar_members(path: Path) -> dict[str, tarfile.TarInfo]:
    """The checkpoint files a plain tar holds, by file name; InputError for anything else in it."""
    found: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for count, member in enumerate(tar):
                if count >= MAX_MEMBERS:
                    raise InputError(f"{path.name}: the tar holds more than {MAX_MEMBERS} members")
                if member.isdir():
                    continue
                parts = PurePosixPath(member.name).parts
                name = parts[-1] if parts else ""
                if member.issparse() or not member.isreg() or len(parts) > 2 or ".." in parts:
                    raise InputError(f"{path.name}: tar member {member.name[:100]!r} is not a plain file")
                if not _allowed(name):
                    raise InputError(
                        f"{path.name}: tar member {name[:100]!r} is not a Hugging Face checkpoint file "
                        "(config.json, model*.safetensors, its index, tokenizer files)"
                    )
                if name in found:
                    raise InputError(f"{path.name}: the tar holds {name!r} twice")
                found[name] = member
    except tarfile.TarError as error:
        raise InputError(f"{path.name}: not a readable plain tar ({error})") from None
    return found


def is_checkpoint(path: Path) -> bool:
    """A folder holding config.json, or a tar whose members include one (reads the tar's headers only)."""
    if path.is_dir():
        return (path / CONFIG).is_file()
    if path.suffix.lower() != ".tar" or not path.is_file():
        return False
    try:
        with tarfile.open(path, mode="r:") as tar:
            for count, member in enumerate(tar):
                if count >= MAX_MEMBERS:
                    return False
                if PurePosixPath(member.name).name == CONFIG:
                    return True
    except (tarfile.TarError, OSError):
        return False
    return False


class Checkpoint:
    """The files of one uploaded checkpoint (folder or tar), read lazily."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._members: dict[str, tarfile.TarInfo] | None = None
        self._folder: Path | None = None
        self._temp: Path | None = None

    @property
    def is_tar(self) -> bool:
        return not self.path.is_dir()

    def names(self) -> list[str]:
        if self.is_tar:
            if self._members is None:
                self._members = _tar_members(self.path)
            return sorted(self._members)
        return sorted(p.name for p in self.path.iterdir() if p.is_file() and _allowed(p.name))

    def _read_small(self, name: str, limit: int) -> bytes:
        if name not in self.names():
            raise InputError(f"{self.path.name}: no {name}")
        if not self.is_tar:
            target = self.path / name
            if target.stat().st_size > limit:
                raise InputError(f"{name}: over {limit:,} bytes")
            return target.read_bytes()
        assert self._members is not None
        member = self._members[name]
        if member.size > limit:
            raise InputError(f"{name}: over {limit:,} bytes")
        with self.path.open("rb") as handle:
            handle.seek(member.offset_data)
            return handle.read(member.size)

    def config(self) -> dict[str, Any]:
        """config.json, bounded and checked to be an object."""
        raw = self._read_small(CONFIG, MAX_CONFIG_BYTES)
        try:
            doc = loads_bounded(raw.decode("utf-8"), MAX_JSON_DEPTH, CONFIG)
        except JSONDepthError as error:
            raise InputError(str(error)) from None
        except (ValueError, UnicodeDecodeError):
            raise InputError(f"{CONFIG}: not valid JSON") from None
        if type(doc) is not dict:
            raise InputError(f"{CONFIG}: expected a JSON object")
        return doc

    def weight_files(self) -> list[str]:
        names = self.names()
        if "model.safetensors.index.json" in names:
            return ["model.safetensors.index.json"]
        if "model.safetensors" in names:
            return ["model.safetensors"]
        raise InputError(f"{self.path.name}: no model.safetensors (or model.safetensors.index.json)")

    def check_weights(self) -> None:
        """Every safetensors header, read without the tensors' data (at its offset inside a tar): valid
        JSON, each tensor's bytes inside its file."""
        import struct

        weights = [n for n in self.names() if n.endswith(".safetensors")]
        self.weight_files()
        if not self.is_tar:
            from compression_core.streaming.source import open_source

            open_source(self.path / self.weight_files()[0]).close()
            return
        assert self._members is not None
        with self.path.open("rb") as handle:
            for name in weights:
                member = self._members[name]
                handle.seek(member.offset_data)
                head = handle.read(8)
                (length,) = struct.unpack("<Q", head) if len(head) == 8 else (-1,)
                if length < 0 or length + 8 > member.size or length > MAX_CONFIG_BYTES * 100:
                    raise InputError(f"{name}: not a safetensors file (header length {length})")
                try:
                    header = loads_bounded(handle.read(length).decode("utf-8"), MAX_JSON_DEPTH, name)
                except (ValueError, UnicodeDecodeError):
                    raise InputError(f"{name}: the safetensors header is not valid JSON") from None
                room = member.size - 8 - length
                for key, entry in header.items() if isinstance(header, dict) else []:
                    if key == "__metadata__":
                        continue
                    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
                    if (
                        not isinstance(offsets, list)
                        or len(offsets) != 2
                        or not all(isinstance(o, int) and 0 <= o <= room for o in offsets)
                    ):
                        raise InputError(f"{name}: tensor {key[:100]!r} lies outside the file")

    def carried(self) -> list[str]:
        """The files copied to the output untouched (tokenizer, generation config)."""
        return [n for n in self.names() if n in TOKENIZER_FILES]

    def folder(self) -> Path:
        """A folder holding the checkpoint's files: the upload itself, or a private extraction of the tar
        (only the allowed names, at most the tar's own size in all)."""
        if not self.is_tar:
            return self.path
        if self._folder is None:
            names = self.names()
            assert self._members is not None
            self._temp = Path(tempfile.mkdtemp(prefix="mcs-hf-"))
            with tarfile.open(self.path, mode="r:") as tar:
                for name in names:
                    source = tar.extractfile(self._members[name])
                    assert source is not None
                    with source, (self._temp / name).open("xb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
            self._folder = self._temp
        return self._folder

    def member_bytes(self, name: str, limit: int = 1 << 30) -> bytes:
        """A small member's bytes (the carried files); InputError past `limit`."""
        return self._read_small(name, limit)

    def close(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
        self._temp = self._folder = None


def model_class(config: dict[str, Any]) -> tuple[Any, Any]:
    """The transformers model class and config object config.json describes: InputError naming an `auto_map`,
    an unknown `model_type` or an `architectures` entry transformers does not export. Builds nothing."""
    import transformers
    from transformers import CONFIG_MAPPING, PreTrainedModel

    if "auto_map" in config:
        names = sorted(config["auto_map"]) if isinstance(config["auto_map"], dict) else []
        raise UnsupportedModel(
            f"{CONFIG}: `auto_map` {names} asks for code shipped with the checkpoint; this service builds "
            "only the architectures transformers itself ships (trust_remote_code is never set)"
        )
    architectures = config.get("architectures")
    if (
        not isinstance(architectures, list)
        or len(architectures) != 1
        or not isinstance(architectures[0], str)
    ):
        raise InputError(f"{CONFIG}: `architectures` must list exactly one class name")
    arch = architectures[0]
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise UnsupportedModel(f"{CONFIG}: `model_type` {model_type!r} is not one transformers ships")
    cls = getattr(transformers, arch, None) if arch.isidentifier() else None
    if not isinstance(cls, type) or not issubclass(cls, PreTrainedModel):
        raise UnsupportedModel(
            f"{CONFIG}: architecture {arch[:100]!r} is not a model class transformers "
            f"{transformers.__version__} ships"
        )
    config_cls = CONFIG_MAPPING[model_type]
    if cls.config_class is None or not issubclass(config_cls, cls.config_class):
        raise UnsupportedModel(f"{CONFIG}: architecture {arch!r} does not take a {model_type!r} config")
    try:
        config_obj = config_cls.from_dict({k: v for k, v in config.items() if k != "transformers_version"})
    except (TypeError, ValueError) as error:
        raise InputError(f"{CONFIG}: transformers refuses it ({str(error)[:300]})") from None
    return cls, config_obj
