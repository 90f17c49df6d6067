"""A Hugging Face checkpoint (issue 23): `config.json` plus `model.safetensors` (or a sharded index), with the
tokenizer files when sent, as a folder or one plain tar; the spec says `{"model": {"hf": true}}`, or the input
is recognised by its `config.json`.

- reading (`checkpoint.py`): config.json bounded and checked, the weights through the safetensors readers of
  `compression_core.streaming.source`; a tar is read in place at `POST /jobs` (headers at their offsets) and
  extracted to a private folder by the worker;
- the module (`source.py`): `transformers` builds the class config.json's `architectures` names, first on the
  meta device (sized against the byte budget, `MCS_MAX_DECODE_BYTES`), then for real, and loads the weights;
  `trust_remote_code` is never set; an `auto_map` or an architecture transformers does not ship is an
  InputError naming it (a 415/422 at `POST /jobs`), before anything is built;
- data and evaluation (`lm.py`): token ids and perplexity for causal language models; raw UTF-8 text
  tokenized with the uploaded `tokenizer.json` (`text.py`);
- outputs: `model.hf.tar`, a checkpoint folder in one plain tar (config.json as uploaded, model.safetensors,
  the tokenizer files untouched); weight quantization (`methods/wquant`) writes its own checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compression_core.errors import InputError
from compression_core.sources.base import SourceKind
from compression_core.sources.hf.checkpoint import Checkpoint, is_checkpoint, model_class
from compression_core.sources.hf.source import OUTPUT_TAR, HFSource, write_checkpoint_tar

__all__ = ["OUTPUT_TAR", "SOURCE", "HFSource", "check_checkpoint", "write_checkpoint_tar"]


def _asked(model: Any) -> bool:
    return bool(getattr(model, "hf", False))


def _claims(path: Path, model: Any) -> bool:
    return _asked(model) or is_checkpoint(path)


def check_checkpoint(path: Path) -> None:
    """What `POST /jobs` checks, from metadata alone: config.json (an architecture transformers ships, no
    `auto_map`), the module's float32 size against the byte budget (built on the meta device), and every
    safetensors header (read at its offset inside a tar)."""
    import torch

    from compression_core.budget import check_bytes

    if not is_checkpoint(path):
        raise InputError(
            f"{path.name}: a Hugging Face model is a folder or plain tar holding config.json and "
            "model.safetensors"
        )
    checkpoint = Checkpoint(path)
    cls, config = model_class(checkpoint.config())
    checkpoint.check_weights()
    with torch.device("meta"):
        probe = cls._from_config(config, dtype=torch.float32)
    check_bytes(
        f"{cls.__name__} built from config.json (float32)", sum(p.numel() * 4 for p in probe.parameters())
    )


def _open(path: Path, model: Any) -> HFSource:
    return HFSource(path, model)


def _check_data(path: Path, model_path: Path) -> None:
    from compression_core.sources.hf.lm import check_token_file
    from compression_core.sources.hf.text import MAX_TOKENIZER_BYTES, TOKENIZER, check_text_file, is_text

    if is_text(path):  # raw text: the checkpoint must carry a tokenizer.json that `tokenizers` reads
        checkpoint = Checkpoint(model_path)
        try:
            found = TOKENIZER in checkpoint.carried()
            tokenizer = checkpoint.member_bytes(TOKENIZER, MAX_TOKENIZER_BYTES) if found else None
            check_text_file(path, tokenizer)
        finally:
            checkpoint.close()
        return
    check_token_file(path)


def _check_job(path: Path, data_path: Path | None) -> list[tuple[str, str]]:
    """A job with data on a Hugging Face model (perplexity, a search's max_perplexity_increase, retraining
    with the LM's loss): token ids or text must be sent, and config.json must name a causal LM."""
    problems = []
    if data_path is None:
        message = (
            'the spec asks for {"upload": true} data but none was sent: token ids (.npz or .safetensors) '
            "or UTF-8 text (.txt, or a .tar of train.txt/test.txt) read with the checkpoint's tokenizer.json"
        )
        problems.append(("data", message))
    try:
        checkpoint = Checkpoint(path)
        try:
            architecture = str((checkpoint.config().get("architectures") or ["?"])[0])
        finally:
            checkpoint.close()
    except InputError:
        return problems  # the upload's own check names what is wrong with the checkpoint
    if not architecture.endswith("ForCausalLM"):
        problems.append(
            (
                "spec.data",
                "data on a Hugging Face model is token ids or text for a causal language model "
                "(*ForCausalLM: perplexity, a search's max_perplexity_increase, retraining with its loss); "
                f"config.json names {architecture}",
            )
        )
    return problems


SOURCE = SourceKind(
    "hf",
    _open,
    _claims,
    priority=20,
    check=check_checkpoint,
    check_data=_check_data,
    check_job=_check_job,
)
