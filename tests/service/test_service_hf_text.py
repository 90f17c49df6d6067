"""Raw UTF-8 text as a Hugging Face job's data, through HTTP on a real worker (issue 23): the tiny Llama
trained in the test, uploaded with a real byte-level `tokenizer.json`, and a tar of `train.txt` and `test.txt`
(held-out standard-library source); an RTN int4 job reports perplexity on the text's tokens, and that figure
is the perplexity of the same bytes sent as ids, computed here without the service."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from svc_helpers import wait_for, worker_stack

from compression_core.spec.parse import example_spec
from tests.sources.hf.tiny_lm import SEQ_LEN, byte_tokenizer_json, stdlib_bytes

transformers = pytest.importorskip("transformers")
pytest.importorskip("compressed_tensors")
pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, redis_url: str, session_tag: str) -> Iterator[object]:
    with worker_stack(tmp_path_factory.mktemp("hf-text"), redis_url, f"hftext-{session_tag}") as started:
        yield started.client


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_an_rtn_job_on_raw_text_reports_the_perplexity_of_its_tokens(
    client: TestClient, tiny_lm: dict, tmp_path: Path
) -> None:
    from compression_core.sources import open_source
    from compression_core.sources.hf.lm import load_tokens, perplexity

    folder: Path = tiny_lm["folder"]
    tokenizer = byte_tokenizer_json().encode()
    model_tar = tmp_path / "lm.tar"
    with tarfile.open(model_tar, "w") as tar:
        for path in sorted(folder.iterdir()):
            if path.name != "tokenizer.json":
                tar.add(path, arcname=path.name)
        _add(tar, "tokenizer.json", tokenizer)
    raw = bytes(stdlib_bytes(192 * SEQ_LEN, skip=150).astype(np.uint8))  # the held-out ids' bytes
    train, test = raw[: 64 * SEQ_LEN], raw[64 * SEQ_LEN :]
    data = tmp_path / "text.tar"
    with tarfile.open(data, "w") as tar:
        _add(tar, "train.txt", train)
        _add(tar, "test.txt", test)

    spec = example_spec("llm-rtn-int4-g128").model_dump(mode="json", exclude_unset=True)
    files = {"model": ("lm.tar", model_tar.read_bytes()), "data": ("text.tar", data.read_bytes())}
    response = client.post("/jobs", files=files, data={"spec": json.dumps(spec)})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=600)
    assert job["state"] == "succeeded", job
    before = job["metrics"]["evaluation"]["before"]

    ids = tmp_path / "ids.npz"  # the same bytes as 1-D ids: cut into rows of 256 (max_position_embeddings)
    np.savez(ids, test=np.frombuffer(test, dtype=np.uint8))
    rows = load_tokens(ids, 256, 256).splits["test"]
    with open_source(folder) as source:
        expected = perplexity(source.module(), rows)
    assert before["tokens"] == expected["tokens"] == (len(test) // 256) * 255
    assert before["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-4)
    assert job["metrics"]["evaluation"]["after"]["tokens"] == before["tokens"]

    artifact = client.get(f"/jobs/{job['id']}/artifacts/model.quantized.tar")
    assert artifact.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(artifact.content)) as tar:
        carried = tar.extractfile("tokenizer.json")
        assert carried is not None and carried.read() == tokenizer
