"""A budget search under embedded `mcs serve`: one worker child over the filesystem broker and SQLite. A
search that waited for its trials would deadlock here; it must plan, return, and be advanced by its trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from svc_helpers import wait_for
from test_service_embedded import free_port, serve

from compression_core.data import load_builtin
from compression_core.train import save_state_dict, train_reference
from compression_core.training.finetune import RetrainConfig

MLP = {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}}


@pytest.mark.slow
def test_a_budget_search_runs_to_the_end_with_one_embedded_worker(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = train_reference(MLP, load_builtin("digits"), RetrainConfig(epochs=6, lr=0.05, batch_size=32))
    model = save_state_dict(reference.model, tmp_path / "mlp.safetensors")
    spec = {
        "model": MLP,
        "data": {"builtin": "digits"},
        "rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "sparsity": 0.5}]}],
        "search": {
            "mode": "budget",
            "parameters": {"rules.0.steps.0.sparsity": {"low": 0.2, "high": 0.98}},
            "max_error_increase": 1.0,
            "max_trials": 4,
        },
    }
    with serve(tmp_path / "mcs-data", free_port(), tmp_path / "serve.log") as client:
        response = client.post(
            "/jobs",
            files={"model": (model.name, model.read_bytes())},
            data={"spec": json.dumps(spec)},
            timeout=120,  # the API's first upload imports torch: slow on a shared, loaded machine
        )
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"], timeout=240)
    assert job["state"] == "succeeded", job.get("error")
    section = job["metrics"]["search"]
    assert len(section["trials"]) == 4 and [c["state"] for c in job["children"]] == ["succeeded"] * 4
    assert [len(r["trials"]) for r in section["trace"]] == [2, 1, 1]  # one worker: one trial per round
