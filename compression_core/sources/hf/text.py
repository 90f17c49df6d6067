"""Raw UTF-8 text as a language model's data, tokenized with the checkpoint's own `tokenizer.json`.

The job's data file is then either
- a `.txt`: the `test` split alone (perplexity before and after; enough for data-free steps such as RTN), or
- a plain `.tar` of `train.txt` (GPTQ's calibration), `test.txt` (required) and optionally
  `validation.txt`, at the top of the tar; nothing else in it (no links, folders of files, other names).

Each split is at most `MAX_TEXT_BYTES` of valid UTF-8 (checked at `POST /jobs` by streaming through the
bytes, nothing kept). The tokenizer is the uploaded checkpoint's `tokenizer.json`, read by the `tokenizers`
library (the Rust engine behind transformers' fast tokenizers): JSON data, no code, so nothing from the upload
runs. A checkpoint without `tokenizer.json` (only a SentencePiece `tokenizer.model`, or none) cannot read
text: the upload is refused naming `data`; send token ids instead (`lm.py`).

Tokenization: the text is encoded in pieces of about `PIECE_CHARS` characters cut after a line end (so memory
stays bounded for a large file), without the tokenizer's special tokens; the special tokens its post-processor
adds to one sequence (e.g. Llama's `<s>` in front) are added once around the whole split. For a text shorter
than one piece the ids equal `Tokenizer.encode(text).ids` exactly; at a cut, a token that would span the line
end is split in two (rare; a handful of tokens in a million). The ids then become rows as uploaded ids do.
"""

from __future__ import annotations

import codecs
import tarfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from compression_core.errors import InputError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "MAX_TEXT_BYTES",
    "MAX_TOKENIZER_BYTES",
    "TEXT_SUFFIXES",
    "TOKENIZER",
    "check_text_file",
    "encode",
    "is_text",
    "read_texts",
    "tokenizer_from_json",
]

TOKENIZER = "tokenizer.json"
TEXT_SUFFIXES = (".txt", ".tar")
MAX_TEXT_BYTES = 64 << 20  # per split
MAX_TOKENIZER_BYTES = 64 << 20
PIECE_CHARS = 1 << 20
SPLIT_FILES = {"train.txt": "train", "validation.txt": "validation", "test.txt": "test"}
_CHUNK = 1 << 20


def is_text(path: Path) -> bool:
    """Whether the data file is raw text (by its stored suffix)."""
    return Path(path).suffix.lower() in TEXT_SUFFIXES


def _members(path: Path) -> dict[str, tarfile.TarInfo]:
    """The split files of a text tar by split name; InputError for anything else in it."""
    found: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for count, member in enumerate(tar):
                if count >= 16:
                    raise InputError(f"{path.name}: a text tar holds at most {len(SPLIT_FILES)} files")
                parts = PurePosixPath(member.name).parts
                if member.isdir() and len(parts) <= 1:  # `.` or one top folder entry (`tar -C dir .`)
                    continue
                name = member.name.removeprefix("./")
                if not member.isreg() or member.issparse() or name not in SPLIT_FILES:
                    raise InputError(
                        f"{path.name}: tar member {member.name[:100]!r} is not one of {sorted(SPLIT_FILES)} "
                        "(plain files at the top of the tar)"
                    )
                if member.size > MAX_TEXT_BYTES:
                    raise InputError(
                        f"{path.name}: {name} holds {member.size} bytes; at most {MAX_TEXT_BYTES} per split"
                    )
                found[SPLIT_FILES[name]] = member
    except tarfile.TarError as error:
        raise InputError(f"{path.name}: not a readable plain tar ({error})") from None
    if "test" not in found:
        raise InputError(
            f"{path.name}: a text tar needs test.txt (and train.txt for calibration); got {sorted(found)}"
        )
    return found


def _decoded(name: str, stream: Any, limit: int, *, keep: bool = True) -> str:
    """The stream's bytes as text: InputError past `limit` bytes or at the first byte that is not UTF-8.
    `keep=False` checks only (the API): each chunk is dropped once decoded, and "" is returned."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts: list[str] = []
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise InputError(f"{name}: more than {limit} bytes of text; at most {limit} per split")
        try:
            text = decoder.decode(chunk)
            if keep:
                parts.append(text)
        except UnicodeDecodeError as error:
            raise InputError(f"{name}: not UTF-8 text (byte {total - len(chunk) + error.start})") from None
    try:
        parts.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text (it ends inside a character)") from None
    return "".join(parts)


def read_texts(path: Path, *, keep: bool = True) -> dict[str, str]:
    """The text of each split (see the module docstring); InputError naming what is wrong. `keep=False`:
    checked chunk by chunk and not kept (each split's text is then "")."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        with path.open("rb") as handle:
            return {"test": _decoded(path.name, handle, MAX_TEXT_BYTES, keep=keep)}
    members = _members(path)
    texts: dict[str, str] = {}
    with tarfile.open(path, mode="r:") as tar:
        for split, member in members.items():
            stream = tar.extractfile(member)
            assert stream is not None
            with stream:
                texts[split] = _decoded(f"{path.name}: {member.name}", stream, MAX_TEXT_BYTES, keep=keep)
    return texts


def check_text_file(path: Path, tokenizer_json: bytes | None) -> None:
    """What `POST /jobs` checks of a text upload: the checkpoint carries a `tokenizer.json` that the
    `tokenizers` library reads, the tar's members and sizes, and that every split is UTF-8 (streamed)."""
    path = Path(path)
    if tokenizer_json is None:
        raise InputError(
            f"{path.name}: raw text needs the model's tokenizer, and the checkpoint has no {TOKENIZER}: add "
            f"it to the model's tar, or send token ids (.npz or .safetensors) instead"
        )
    tokenizer_from_json(tokenizer_json)
    read_texts(path, keep=False)  # UTF-8 and sizes, 1 MiB at a time; nothing kept


def tokenizer_from_json(data: bytes) -> Tokenizer:
    """The tokenizer a `tokenizer.json` describes (data: the `tokenizers` library runs no code from it)."""
    from tokenizers import Tokenizer

    if len(data) > MAX_TOKENIZER_BYTES:
        raise InputError(f"{TOKENIZER}: {len(data)} bytes; at most {MAX_TOKENIZER_BYTES}")
    try:
        return Tokenizer.from_str(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, Exception) as error:  # tokenizers raises a bare Exception
        raise InputError(f"{TOKENIZER}: the tokenizers library cannot read it ({str(error)[:300]})") from None


def _special(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The ids the post-processor puts before and after one sequence (e.g. `[<s>]`, `[]`)."""
    probe = "a"
    bare = tokenizer.encode(probe, add_special_tokens=False).ids
    full = tokenizer.encode(probe, add_special_tokens=True).ids
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return [], []


def _pieces(text: str, size: int) -> list[str]:
    """`text` cut into pieces of about `size` characters, each cut after a line end where there is one."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            newline = text.rfind("\n", start, end)
            end = newline + 1 if newline > start else end
        pieces.append(text[start:end])
        start = end
    return pieces


def encode(tokenizer: Tokenizer, text: str, *, piece_chars: int = PIECE_CHARS) -> np.ndarray:
    """The split's token ids, 1-D int64 (see the module docstring)."""
    before, after = _special(tokenizer)
    ids: list[np.ndarray] = [np.asarray(before, dtype=np.int64)]
    pieces = _pieces(text, piece_chars)
    for start in range(0, len(pieces), 8):
        batch = tokenizer.encode_batch(pieces[start : start + 8], add_special_tokens=False)
        ids.extend(np.asarray(encoding.ids, dtype=np.int64) for encoding in batch)
    ids.append(np.asarray(after, dtype=np.int64))
    return np.concatenate(ids)
