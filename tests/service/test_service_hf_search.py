"""A search on a Hugging Face causal LM through HTTP (issue 23): a budget in perplexity points over `wquant`
trials, each a child job on a real worker process; the outcome is the chosen trial's packed checkpoint and the
search table. A perplexity budget with no token ids sent, or on a model that is not a causal LM: 422, nothing
queued."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from svc_helpers import Stack, wait_for, worker_stack

pytest.importorskip("transformers")
pytest.importorskip("compressed_tensors")

PROBLEM = "application/problem+json"
SPEC = {
    "model": {"hf": True},
    "data": {"upload": True},
    "rules": [],
    "outputs": {"dense": False},
    "wquant": {"bits": 4, "group_size": 32},
    "search": {"mode": "budget", "parameters": {"wquant.bits": [2, 4, 8]}, "max_perplexity_increase": 0.05},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, session_tag: str) -> Iterator[Stack]:
    with worker_stack(tmp_path_factory.mktemp("hf-search"), redis_url, f"hfs-{session_tag}") as started:
        yield started


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny Llama trained briefly (150 steps), as one plain tar, and its token ids."""
    import torch

    from tests.sources.hf.tiny_lm import train_tiny_lm, write_token_data

    root = tmp_path_factory.mktemp("hf-search-lm")
    threads = torch.get_num_threads()
    folder = train_tiny_lm(root / "lm", steps=150)
    torch.set_num_threads(threads)
    tar = root / "lm.tar"
    with tarfile.open(tar, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.add(path, arcname=path.name)
    return {"folder": folder, "tar": tar, "tokens": write_token_data(root / "tokens.npz", test_rows=32)}


def _submit(stack: Stack, model: Path, tokens: Path | None, spec: dict) -> object:
    files = {"model": (model.name, model.read_bytes())}
    if tokens is not None:
        files["data"] = (tokens.name, tokens.read_bytes())
    return stack.client.post("/jobs", files=files, data={"spec": json.dumps(spec)})


@pytest.mark.timeout(600)
def test_perplexity_budget_search_over_http_returns_the_chosen_trials_checkpoint(
    stack: Stack, lm: dict
) -> None:
    response = _submit(stack, lm["tar"], lm["tokens"], SPEC)
    assert response.status_code == 202, response.text
    job = wait_for(stack.client, response.json()["id"], timeout=500)
    assert job["state"] == "succeeded", job
    section = job["metrics"]["search"]
    assert section["budget"]["measure"] == "perplexity" and section["counts"]["failed"] == 0
    trials = section["trials"]
    assert {t["parameters"]["wquant.bits"] for t in trials} <= {2, 4, 8} and len(trials) >= 2
    within = [
        t
        for t in trials
        if t["validation_perplexity_after"] - t["validation_perplexity_before"] <= 0.05 + 1e-12
    ]
    assert section["best"] == max(within, key=lambda t: t["ratio"])["index"]
    best = next(t for t in trials if t["index"] == section["best"])
    names = {a["name"] for a in job["artifacts"]}
    assert {"model.bin", "metrics.json", "model.quantized.tar", "search.csv", "report.html"} <= names, names
    report = stack.client.get(f"/jobs/{job['id']}/artifacts/report.html").text
    assert "validation ppl increase" in report and "Perplexity budget" in report
    download = stack.client.get(f"/jobs/{job['id']}/artifacts/model.quantized.tar")
    assert download.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        config = json.loads(tar.extractfile("config.json").read())  # type: ignore[union-attr]
    groups = config["quantization_config"]["config_groups"]
    assert next(iter(groups.values()))["weights"]["num_bits"] == best["parameters"]["wquant.bits"]
    assert best["ratio"] == pytest.approx(lm["tar"].stat().st_size / len(download.content))


def test_a_perplexity_budget_without_token_ids_or_on_a_classifier_is_a_422(stack: Stack, lm: dict) -> None:
    before = stack.client.get("/jobs").json()
    response = _submit(stack, lm["tar"], None, SPEC)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM, response.text
    assert "none was sent: token ids" in response.json()["detail"]
    folder: Path = lm["folder"]
    config = {
        **json.loads((folder / "config.json").read_text()),
        "architectures": ["LlamaForSequenceClassification"],
    }
    tar = stack.tmp / "classifier.tar"
    with tarfile.open(tar, "w") as archive:
        archive.add(folder / "model.safetensors", arcname="model.safetensors")
        data = json.dumps(config).encode()
        info = tarfile.TarInfo("config.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    response = _submit(stack, tar, lm["tokens"], SPEC)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM, response.text
    assert "LlamaForSequenceClassification" in response.json()["detail"]
    assert stack.client.get("/jobs").json() == before
