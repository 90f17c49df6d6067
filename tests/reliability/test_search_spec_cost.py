"""The cheap refusals come first (issue 21, item 4): a large search spec sent with a model that is not a
state dict is 415 from the file's metadata, before the search's check validates a single trial (it took
254.6 s of API CPU)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import compression_core.methods.search.check as check

from .conftest import Api

STEPS = [{"type": "prune", "sparsity": 0.5}, {"type": "quantize", "k": 8}]
RULES = [{"select": {"name": f"layer{i}.*"}, "steps": STEPS} for i in range(1000)]
SEARCH = {
    "model": {"arch": "mlp", "kwargs": {"sizes": [48, 32, 10]}},
    "data": {"builtin": "digits"},
    "rules": RULES,
    "search": {
        "mode": "budget",
        "parameters": {
            f"rules.{i}.steps.0.sparsity": [0.1 + 0.003 * j for j in range(256)] for i in range(16)
        },
        "max_error_increase": 1.0,
    },
}


@pytest.mark.parametrize("route", ["/jobs", "/jobs/validate"])
def test_a_bad_model_is_refused_before_the_search_is_checked(
    api: Api, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    checked: list[Any] = []

    def spy(spec: Any) -> None:
        checked.append(spec)
        raise ValueError("the search's check ran")

    monkeypatch.setattr(check, "check_search", spy)
    text = json.dumps(SEARCH)
    assert len(text) > 100_000
    started = time.process_time()
    response = api.client.post(
        route,
        files={"model": ("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00not a model at all")},
        data={"spec": text},
        headers=api.token("me"),
    )
    seconds = time.process_time() - started
    print(f"{route}: {len(text):,}-byte search spec with a broken model answered in {seconds:.2f} s of CPU")
    assert response.status_code == 415, response.text
    assert checked == []
