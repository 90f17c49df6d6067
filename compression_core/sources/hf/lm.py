"""A language model's data and evaluation: token ids in, perplexity out.

The job's data file (`.npz` or `.safetensors`, `{"data": {"upload": true}}`) holds integer arrays of token ids
(or it is raw UTF-8 text, tokenized with the checkpoint's `tokenizer.json`: `text.py`, `load_text`):

- `test`: the evaluation split (required): 2-D `(sequences, length)`, or 1-D, cut into rows of `seq_len`
  (the model's `max_position_embeddings`, at most `DEFAULT_SEQ_LEN`); a short tail is dropped;
- `train`: the calibration split (GPTQ's Hessians), same shapes; optional for data-free steps;
- `validation`: optional, as `test`.

Perplexity = exp(mean negative log-likelihood of every token after the first of each row), the way
`transformers` reports it for causal LMs with `labels = input_ids`: the count of predicted tokens is reported
beside it (`tokens`). Every id must be below the model's vocabulary size (InputError naming the split).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compression_core.errors import InputError

__all__ = ["DEFAULT_SEQ_LEN", "TokenSplits", "load_text", "load_tokens", "perplexity"]

DEFAULT_SEQ_LEN = 512
SPLITS = ("train", "validation", "test")


@dataclass
class TokenSplits:
    """Token-id rows (int64) per split; `name` is the uploaded file's."""

    name: str
    splits: dict[str, torch.Tensor]
    kind: str = "token ids"  # or "text" (tokenized here with the checkpoint's tokenizer.json: text.py)
    extra: dict[str, Any] | None = None  # what the summary adds for text (characters per split, tokenizer)

    @property
    def sizes(self) -> dict[str, int]:
        return {k: int(v.shape[0]) for k, v in self.splits.items()}

    def tokens(self, split: str) -> int:
        rows = self.splits[split]
        return int(rows.shape[0] * rows.shape[1])

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "sizes": self.sizes,
            "tokens": {k: self.tokens(k) for k in self.splits},
            "evaluated_on": "test",
            **(self.extra or {}),
        }


def _rows(name: str, split: str, array: np.ndarray, seq_len: int, vocab: int) -> torch.Tensor:
    if array.dtype.kind not in "iu":
        raise InputError(f"{name}: `{split}` must hold integer token ids, not {array.dtype}")
    if array.ndim == 1:
        count = array.shape[0] // seq_len
        if count == 0:
            raise InputError(f"{name}: `{split}` holds {array.shape[0]} ids, fewer than one row of {seq_len}")
        array = array[: count * seq_len].reshape(count, seq_len)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] < 2:
        raise InputError(f"{name}: `{split}` must be 1-D, or 2-D (rows, length >= 2); got {array.shape}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= vocab:
        raise InputError(f"{name}: `{split}` holds ids from {low} to {high}; the vocabulary has {vocab}")
    return torch.from_numpy(array.astype(np.int64))


def load_tokens(path: Path, vocab_size: int, max_positions: int | None) -> TokenSplits:
    """Token splits from the uploaded data file (see the module docstring); InputError for anything else."""
    from compression_core.data import read_arrays

    path = Path(path)
    arrays = read_arrays(path, "token ids")
    unknown = sorted(set(arrays) - set(SPLITS))
    if unknown or "test" not in arrays:
        raise InputError(
            f"{path.name}: a language model's data holds arrays {list(SPLITS)} of token ids (`test` "
            f"required); got {sorted(arrays)}"
        )
    return TokenSplits(path.name, _split_rows(path.name, arrays, vocab_size, max_positions))


def _split_rows(
    name: str, arrays: dict[str, np.ndarray], vocab_size: int, max_positions: int | None
) -> dict[str, torch.Tensor]:
    seq_len = min(DEFAULT_SEQ_LEN, max_positions or DEFAULT_SEQ_LEN)
    splits = {k: _rows(name, k, arrays[k], seq_len, vocab_size) for k in SPLITS if k in arrays}
    for split, rows in splits.items():
        if max_positions is not None and rows.shape[1] > max_positions:
            raise InputError(
                f"{name}: `{split}` rows of {rows.shape[1]} tokens exceed the model's "
                f"max_position_embeddings {max_positions}"
            )
    return splits


def load_text(path: Path, tokenizer_json: bytes, vocab_size: int, max_positions: int | None) -> TokenSplits:
    """Raw UTF-8 text (a `.txt`, or a tar of `train.txt`/`test.txt`/`validation.txt`) tokenized with the
    checkpoint's `tokenizer.json`, then cut into rows as uploaded ids are (text.py)."""
    from compression_core.sources.hf.text import encode, read_texts, tokenizer_from_json

    path = Path(path)
    tokenizer = tokenizer_from_json(tokenizer_json)
    texts = read_texts(path)
    arrays = {split: encode(tokenizer, text) for split, text in texts.items()}
    extra = {
        "tokenizer": "tokenizer.json",
        "characters": {k: len(v) for k, v in texts.items()},
        "text_tokens": {k: int(v.shape[0]) for k, v in arrays.items()},  # before the short tail is cut
    }
    return TokenSplits(path.name, _split_rows(path.name, arrays, vocab_size, max_positions), "text", extra)


def check_token_file(path: Path) -> None:
    """What `POST /jobs` checks of a language model's data, from headers alone: `.npz` or `.safetensors`,
    arrays named from `SPLITS` with `test` among them, integer dtypes, at most 2-D (InputError)."""
    from compression_core.data import _npz_members

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        found = {key: (dtype.kind, len(shape)) for key, (_, dtype, shape) in _npz_members(path).items()}
    elif suffix == ".safetensors":
        from compression_core.streaming.source import read_safetensors_header

        entries = read_safetensors_header(path).entries
        found = {
            key: ("i" if str(e.get("dtype", "")).startswith(("I", "U")) else "f", len(e.get("shape", [])))
            for key, e in entries.items()
            if key != "__metadata__" and isinstance(e, dict)
        }
    else:
        raise InputError(
            f"{path.name}: token ids must be .npz or .safetensors (raw UTF-8 text: .txt, or a .tar of "
            f"train.txt and test.txt), not {suffix or 'no extension'}"
        )
    if set(found) - set(SPLITS) or "test" not in found:
        raise InputError(
            f"{path.name}: a language model's data holds arrays {list(SPLITS)} of token ids (`test` "
            f"required); got {sorted(found)}"
        )
    for key, (kind, ndim) in found.items():
        if kind not in "iu" or ndim not in (1, 2):
            raise InputError(f"{path.name}: `{key}` must be a 1-D or 2-D array of integer token ids")


@torch.no_grad()
def perplexity(
    model: nn.Module, rows: torch.Tensor, *, device: str = "cpu", batch: int = 8
) -> dict[str, Any]:
    """exp(mean NLL) of every token after each row's first, with the count of tokens predicted."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, rows.shape[0], batch):
            ids = rows[start : start + batch].to(device)
            logits = model(input_ids=ids).logits.float()
            nll = nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"
            )
            total += float(nll)
            count += ids[:, 1:].numel()
    finally:
        model.train(was_training)
    mean = total / max(count, 1)
    return {"perplexity": math.exp(mean), "nll": mean, "tokens": count, "n": int(rows.shape[0])}
