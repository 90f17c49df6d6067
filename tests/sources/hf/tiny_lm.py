"""A tiny Llama-style causal LM trained on real text that ships with Python: the standard library's own source
files, read as bytes (a byte-level vocabulary of 256, so no tokenizer file is needed). Used by the tests of
`sources/hf` and `methods/wquant`, the HTTP test and benchmarks/bench_llm_quant.py.

`train_tiny_lm(folder)` writes a Hugging Face checkpoint folder (config.json, model.safetensors);
`write_token_data(path)` the job's token ids (`train` and `test`, disjoint files of the standard library).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import torch

SEQ_LEN = 64


def stdlib_bytes(limit: int, *, skip: int = 0) -> np.ndarray:
    """Bytes of the standard library's .py files in sorted order, from file number `skip`, at most `limit`."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"))[skip:]
    out: list[bytes] = []
    total = 0
    for path in files:
        data = path.read_bytes()
        out.append(data)
        total += len(data)
        if total >= limit:
            break
    return np.frombuffer(b"".join(out)[:limit], dtype=np.uint8).astype(np.int64)


def rows(ids: np.ndarray, seq_len: int = SEQ_LEN) -> np.ndarray:
    count = ids.shape[0] // seq_len
    return ids[: count * seq_len].reshape(count, seq_len)


def tiny_config(hidden: int = 128, layers: int = 2, intermediate: int = 256) -> object:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=256,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )


def train_tiny_lm(folder: Path, *, steps: int = 300, batch: int = 8, seed: int = 0) -> Path:
    """Train the tiny LM (~0.36 M parameters; ~90-130 s on one core of a busy 2-core machine) on the first
    ~2 MB of the standard library and save it as a checkpoint folder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains faster on one thread when other processes share the cores
    try:
        return _train(folder, steps, batch, seed)
    finally:
        torch.set_num_threads(threads)


def _train(folder: Path, steps: int, batch: int, seed: int) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    data = torch.from_numpy(rows(stdlib_bytes(2_000_000)))
    model = AutoModelForCausalLM.from_config(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        ids = data[torch.randint(0, data.shape[0], (batch,), generator=generator)]
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    model.save_pretrained(folder)
    return folder


def write_token_data(path: Path, *, train_rows: int = 64, test_rows: int = 64) -> Path:
    """`train` (calibration) and `test` rows from standard-library files the model was not trained on."""
    held_out = stdlib_bytes((train_rows + test_rows) * SEQ_LEN, skip=150)
    all_rows = rows(held_out)
    np.savez(path, train=all_rows[:train_rows], test=all_rows[train_rows : train_rows + test_rows])
    return path


def byte_tokenizer_json() -> str:
    """A real `tokenizer.json` whose ids are the tiny LM's: each UTF-8 byte is its own token (byte-level BPE
    with the 256 byte symbols and no merges), so `encode(text).ids == list(text.encode())`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    # GPT-2's byte-to-symbol map: printable bytes stand for themselves, the others take 256, 257, ... in order
    printable = {ord(c) for c in pre_tokenizers.ByteLevel.alphabet() if ord(c) < 256}
    others = [b for b in range(256) if b not in printable]
    mapping = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}
    tokenizer = Tokenizer(models.BPE(vocab={mapping[b]: b for b in range(256)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer.to_str()
