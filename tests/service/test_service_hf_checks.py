"""What `POST /jobs` checks of a Hugging Face job before queueing (issue 23), no worker needed: the model is a
checkpoint when the spec says `hf`, and the data is token ids (from its headers)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from compression_core.spec.parse import example_spec

transformers = pytest.importorskip("transformers")

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def checkpoint_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.sources.hf.tiny_lm import tiny_config

    root = tmp_path_factory.mktemp("hf-checks")
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(tiny_config(layers=1)).save_pretrained(root / "lm")
    with tarfile.open(root / "lm.tar", "w") as tar:
        for path in sorted((root / "lm").iterdir()):
            tar.add(path, arcname=path.name)
    return root / "lm.tar"


def _post(client: TestClient, model: Path, data: Path, spec: dict) -> object:
    files = {"model": (model.name, model.read_bytes()), "data": (data.name, data.read_bytes())}
    return client.post("/jobs", files=files, data={"spec": json.dumps(spec)})


def test_data_that_is_not_token_ids_is_a_422_naming_data(
    client: TestClient, checkpoint_tar: Path, tmp_path: Path
) -> None:
    data = tmp_path / "images.npz"
    np.savez(data, x_train=np.zeros((4, 3), dtype=np.float32), y_train=np.zeros(4, dtype=np.int64))
    spec = example_spec("llm-gptq-int4-g128").model_dump(mode="json", exclude_unset=True)
    response = _post(client, checkpoint_tar, data, spec)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM, response.text
    assert "`test` required" in response.json()["detail"]
    assert response.json()["errors"][0]["field"] == "data"
    assert client.get("/jobs").json()["items"] == []


def test_hf_true_with_a_plain_state_dict_is_refused(client: TestClient, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(4)}, str(model))
    data = tmp_path / "tokens.npz"
    np.savez(data, test=np.zeros((2, 8), dtype=np.int64))
    spec = example_spec("llm-rtn-int4-g128").model_dump(mode="json", exclude_unset=True)
    response = _post(client, model, data, spec)
    assert response.status_code == 415, response.text
    assert "config.json" in response.json()["detail"]


def test_a_good_upload_is_queued(client: TestClient, checkpoint_tar: Path, tmp_path: Path) -> None:
    data = tmp_path / "tokens.npz"
    np.savez(data, test=np.zeros((2, 8), dtype=np.int64), train=np.zeros((2, 8), dtype=np.int64))
    spec = example_spec("llm-gptq-int4-g128").model_dump(mode="json", exclude_unset=True)
    response = _post(client, checkpoint_tar, data, spec)
    assert response.status_code == 202, response.text


def test_raw_text_without_a_tokenizer_in_the_checkpoint_is_a_422_naming_data(
    client: TestClient, checkpoint_tar: Path, tmp_path: Path
) -> None:
    data = tmp_path / "eval.txt"
    data.write_text("def f(x):\n    return x\n", encoding="utf-8")
    spec = example_spec("llm-rtn-int4-g128").model_dump(mode="json", exclude_unset=True)
    response = _post(client, checkpoint_tar, data, spec)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM, response.text
    assert "no tokenizer.json" in response.json()["detail"]
    assert response.json()["errors"][0]["field"] == "data"
    assert client.get("/jobs").json()["items"] == []
