"""`HFSource`: a Hugging Face checkpoint as a model source (see the package docstring)."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compression_core.budget import check_bytes
from compression_core.errors import InputError
from compression_core.sources.hf.checkpoint import CONFIG, Checkpoint, model_class
from compression_core.sources.reader_backed import ReaderBackedSource
from compression_core.streaming.safetensors_out import SafetensorsStream

if TYPE_CHECKING:
    import torch
    from torch import nn


__all__ = ["OUTPUT_TAR", "HFSource", "write_checkpoint_tar"]

OUTPUT_TAR = "model.hf.tar"  # the dense checkpoint (config.json, model.safetensors, tokenizer files)


def _add(tar: tarfile.TarFile, name: str, data: bytes | SafetensorsStream) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if isinstance(data, bytes) else data.size
    info.mtime = 0  # the same input and spec give the same bytes
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data) if isinstance(data, bytes) else data)


def write_checkpoint_tar(
    target: Path, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], carried: Mapping[str, bytes]
) -> Path:
    """A plain tar of a loadable checkpoint folder: config.json, model.safetensors and the carried files
    (written to `target` through a temporary name, then renamed)."""
    partial = target.with_name(target.name + ".partial")
    weights = SafetensorsStream(tensors, metadata={"format": "pt"})  # read out of the tensors, not copied
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, CONFIG, (json.dumps(dict(config), indent=2, sort_keys=True) + "\n").encode())
        _add(tar, "model.safetensors", weights)
        for name in sorted(carried):
            _add(tar, name, carried[name])
    partial.replace(target)
    return target


class HFSource(ReaderBackedSource):
    """A Hugging Face checkpoint folder or tar; transformers builds the module from config.json."""

    kind = "hf"
    streamable = False  # the output is one checkpoint file, written from the whole state dict
    deployable = False  # ONNX / the CNN deployment table do not apply; the output is a checkpoint

    def __init__(self, path: Path, model: Any = None) -> None:
        super().__init__(path, model)
        self.checkpoint = Checkpoint(self.path)
        self._config: dict[str, Any] | None = None

    # --- the checkpoint ---------------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """config.json as uploaded (checked: an architecture transformers ships, no `auto_map`)."""
        if self._config is None:
            config = self.checkpoint.config()
            model_class(config)
            self._config = config
        return self._config

    def weights_path(self) -> Path:
        self.config  # noqa: B018 - refuse an unknown architecture before any weight is read
        return self.checkpoint.folder() / self.checkpoint.weight_files()[0]

    # --- the module ---------------------------------------------------------------------------------------

    @property
    def has_module(self) -> bool:
        return True

    @property
    def is_causal_lm(self) -> bool:
        return str(self.config["architectures"][0]).endswith("ForCausalLM")

    def module(self, state_dict: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
        """The architecture built from config.json on the meta device, sized against the byte budget, then
        built for real and loaded with `state_dict` (default: the checkpoint's weights)."""
        import torch
        from transformers.initialization import no_init_weights

        cls, config = model_class(self.config)
        clock = time.perf_counter()
        with torch.device("meta"):
            probe = cls._from_config(config, dtype=torch.float32)
        nbytes = sum(p.numel() * 4 for p in probe.parameters()) + sum(b.numel() * 4 for b in probe.buffers())
        check_bytes(f"{cls.__name__} built from {CONFIG} (float32)", nbytes)
        expected = set(probe.state_dict())
        del probe
        weights = self.state_dict() if state_dict is None else state_dict
        unexpected = sorted(set(weights) - expected)
        if unexpected:
            raise InputError(
                f"{CONFIG}: {cls.__name__} has no parameters {unexpected[:5]} (of {len(unexpected)})"
            )
        with no_init_weights():
            model = cls._from_config(config, dtype=torch.float32)
        missing = model.load_state_dict(dict(weights), strict=False).missing_keys
        model.tie_weights()
        tied = _tied_names(model)
        untied = sorted(set(missing) - tied)
        if untied:
            raise InputError(
                f"the checkpoint lacks {untied[:5]} (of {len(untied)}) that {cls.__name__} needs"
            )
        model.eval()
        self.build_seconds = time.perf_counter() - clock
        return model

    # --- data and evaluation ------------------------------------------------------------------------------

    def load_data(self, data_spec: Any, data_path: Path | None, model: nn.Module) -> Any:
        from compression_core.sources.hf.lm import load_tokens

        if not self.is_causal_lm:
            raise InputError(
                f"{CONFIG}: evaluation with data is implemented for causal language models (*ForCausalLM), "
                f"not {self.config['architectures'][0]}"
            )
        if getattr(data_spec, "builtin", None) is not None or data_path is None:
            raise InputError(
                'a language model\'s data is the token ids uploaded with the job: {"upload": true}'
            )
        vocab = int(self.config.get("vocab_size") or 0)
        if vocab <= 0:
            raise InputError(f"{CONFIG}: no `vocab_size`")
        from compression_core.sources.hf.text import is_text

        if is_text(data_path):  # raw UTF-8 text, tokenized with the uploaded tokenizer.json
            from compression_core.sources.hf.lm import load_text

            return load_text(
                data_path, self.tokenizer_json(), vocab, self.config.get("max_position_embeddings")
            )
        return load_tokens(data_path, vocab, self.config.get("max_position_embeddings"))

    def tokenizer_json(self) -> bytes:
        """The uploaded `tokenizer.json` (InputError naming `data` when the checkpoint has none)."""
        from compression_core.sources.hf.text import MAX_TOKENIZER_BYTES, TOKENIZER, check_text_file

        if TOKENIZER not in self.checkpoint.carried():
            check_text_file(Path("data.txt"), None)  # raises: text needs the tokenizer
        return self.checkpoint.member_bytes(TOKENIZER, MAX_TOKENIZER_BYTES)

    def evaluate(self, model: nn.Module, data: Any, device: str) -> dict[str, Any]:
        from compression_core.sources.hf.lm import perplexity

        result = {**perplexity(model, data.splits["test"], device=device), "split": "test"}
        if "validation" in data.splits:  # what a search chooses on (methods/search/lm_trial.py)
            result["validation"] = {**perplexity(model, data.splits["validation"], device=device)}
            result["validation"]["split"] = "validation"
        return result

    # --- outputs ------------------------------------------------------------------------------------------

    def carried(self) -> dict[str, bytes]:
        """The tokenizer files and generation config, as uploaded."""
        return {name: self.checkpoint.member_bytes(name) for name in self.checkpoint.carried()}

    def write_checkpoint(
        self, target: Path, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]
    ) -> Path:
        """`target`: a tar of config.json (the uploaded one updated with `config`), `tensors` as
        model.safetensors and the carried files."""
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        return write_checkpoint_tar(Path(target), {**self.config, **config}, tensors, self.carried())

    def write(self, out_dir: Path, state_dict: Mapping[str, torch.Tensor]) -> list[Path]:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        return [write_checkpoint_tar(Path(out_dir) / OUTPUT_TAR, self.config, state_dict, self.carried())]

    # --- the files read -----------------------------------------------------------------------------------

    def input_files(self) -> list[Path]:
        if self.checkpoint.is_tar:
            return [self.path]
        return [self.path / name for name in self.checkpoint.names()]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "architecture": self.checkpoint.config().get("architectures")}

    def close(self) -> None:
        super().close()
        self._reader = None  # a tar's extracted folder goes with the checkpoint: a later read opens anew
        self.checkpoint.close()


def _tied_names(model: nn.Module) -> set[str]:
    """Parameter names that share storage with an earlier one (tied embeddings): not stored in checkpoints."""
    seen: dict[int, str] = {}
    tied: set[str] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = tensor.data_ptr()
        if key in seen and key != 0:
            tied.add(name)
        else:
            seen[key] = name
    return tied
