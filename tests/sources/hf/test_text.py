"""Raw UTF-8 text as a language model's data: read and bounded, tokenized with the checkpoint's tokenizer.json
(a BPE tokenizer trained here on the standard library's source, and the tiny LM's byte-level one)."""

from __future__ import annotations

import io
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from compression_core.errors import InputError
from compression_core.sources.hf.text import check_text_file, encode, read_texts, tokenizer_from_json
from tests.sources.hf.tiny_lm import byte_tokenizer_json, stdlib_bytes, tiny_config

pytest.importorskip("tokenizers")


def _text(limit: int, skip: int = 0) -> str:
    return bytes(stdlib_bytes(limit, skip=skip).astype(np.uint8)).decode("utf-8", "replace")


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def bpe() -> object:
    """A BPE tokenizer (vocabulary 400) trained on ~200 kB of the standard library, with a `<s>` template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_text(200_000).splitlines(keepends=True), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tokenizer_from_json(tokenizer.to_str().encode())


def test_a_short_text_encodes_as_the_tokenizer_encodes_it_whole(bpe: object) -> None:
    text = _text(20_000, skip=150)
    ids = encode(bpe, text)  # type: ignore[arg-type]
    assert ids.dtype == np.int64 and ids.tolist() == bpe.encode(text).ids  # type: ignore[attr-defined]
    assert ids[0] == 1 and (ids[1:] != 1).all()  # the template's <s> once, in front


def test_a_long_text_is_encoded_in_pieces_cut_at_line_ends(bpe: object) -> None:
    text = _text(60_000, skip=150)
    whole = bpe.encode(text).ids  # type: ignore[attr-defined]
    pieces = encode(bpe, text, piece_chars=2_000)  # type: ignore[arg-type]
    assert pieces[0] == 1 and (pieces[1:] != 1).all()
    assert bpe.decode(pieces.tolist()) == text  # type: ignore[attr-defined]
    assert abs(len(pieces) - len(whole)) <= len(text) // 2_000  # at most a token more per cut


def test_splits_are_read_from_a_txt_or_a_tar(tmp_path: Path) -> None:
    (tmp_path / "eval.txt").write_text("naïve text\n", encoding="utf-8")
    assert read_texts(tmp_path / "eval.txt") == {"test": "naïve text\n"}
    assert read_texts(tmp_path / "eval.txt", keep=False) == {"test": ""}  # the API's check keeps nothing
    tar = _tar(
        tmp_path / "text.tar", {"train.txt": b"calibration\n", "test.txt": "held out \u20ac\n".encode()}
    )
    assert read_texts(tar) == {"train": "calibration\n", "test": "held out \u20ac\n"}
    (tmp_path / "made").mkdir()
    (tmp_path / "made" / "test.txt").write_bytes(b"from tar -C made .\n")
    with tarfile.open(tmp_path / "dot.tar", "w") as made:  # `tar cf dot.tar -C made .`: ./ and ./test.txt
        made.add(tmp_path / "made" / "test.txt", arcname="./test.txt")
        made.add(tmp_path / "made", arcname=".", recursive=False)
    assert read_texts(tmp_path / "dot.tar") == {"test": "from tar -C made .\n"}


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"train.txt": b"x"}, "needs test.txt"),
        ({"test.txt": b"x", "notes.md": b"y"}, "'notes.md' is not one of"),
        ({"deep/test.txt": b"x"}, "'deep/test.txt' is not one of"),
        ({"test.txt": b"ok \xff\xfe"}, r"not UTF-8 text \(byte 3\)"),
        ({"test.txt": "caf\u00e9".encode()[:-1]}, "ends inside a character"),
    ],
)
def test_a_bad_text_upload_names_what_is_wrong(tmp_path: Path, members: dict, message: str) -> None:
    tar = _tar(tmp_path / "text.tar", members)
    with pytest.raises(InputError, match=message):
        check_text_file(tar, byte_tokenizer_json().encode())


def test_text_without_a_tokenizer_or_with_a_broken_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(InputError, match="no tokenizer.json"):
        check_text_file(tmp_path / "t.txt", None)
    with pytest.raises(InputError, match="tokenizers library cannot read it"):
        check_text_file(tmp_path / "t.txt", b'{"note": "not a tokenizer"}')


def test_text_perplexity_equals_the_perplexity_of_the_same_ids(tmp_path: Path) -> None:
    """Through the source: the tiny LM's byte-level tokenizer.json makes the text's ids its bytes, so a job
    on the text and a job on the ids evaluate the same rows."""
    transformers = pytest.importorskip("transformers")
    from compression_core.sources import open_source
    from compression_core.sources.hf.lm import load_tokens, perplexity

    torch.manual_seed(0)
    folder = tmp_path / "lm"
    transformers.AutoModelForCausalLM.from_config(tiny_config(layers=1)).save_pretrained(folder)
    (folder / "tokenizer.json").write_text(byte_tokenizer_json())
    raw = bytes(stdlib_bytes(300 * 64, skip=150).astype(np.uint8))
    text = raw.decode("utf-8")
    _tar(tmp_path / "text.tar", {"train.txt": raw[:3000], "test.txt": raw[3000:]})
    np.savez(
        tmp_path / "ids.npz",
        train=np.frombuffer(raw[:3000], np.uint8),
        test=np.frombuffer(raw[3000:], np.uint8),
    )
    with open_source(folder) as source:
        model = source.module()
        from_text = source.load_data(None, tmp_path / "text.tar", model)
        summary = from_text.summary()
        assert summary["kind"] == "text" and summary["characters"]["test"] == len(text) - 3000
        ids = load_tokens(tmp_path / "ids.npz", 256, 256)
        for split in ("train", "test"):
            assert torch.equal(from_text.splits[split], ids.splits[split])
        first = perplexity(model, from_text.splits["test"])
        assert first["tokens"] == ids.splits["test"].shape[0] * 255
        assert math.isclose(first["perplexity"], perplexity(model, ids.splits["test"])["perplexity"])
