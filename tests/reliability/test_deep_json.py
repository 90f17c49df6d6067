"""Deeply nested JSON anywhere a client or a file can put it is a 4xx (or a typed library error) naming the
part, never a 500 or a traceback (issue 21, item 7): the spec on /jobs and /jobs/validate, a safetensors
header as `model` or `teacher`, a shard index."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from safetensors.torch import save_file
from svc_helpers import SPEC, small_state_dict, write_model

from .conftest import Api

PROBLEM = "application/problem+json"


def deep_spec(depth: int = 1000) -> str:
    """A spec whose `model.kwargs` nests `depth` lists (about 2 kB)."""
    return '{"model": {"arch": "lenet5", "kwargs": {"x": ' + "[" * depth + "]" * depth + "}}}"


def deep_safetensors(path: Path, depth: int = 100_000) -> Path:
    header = b"[" * depth + b"]" * depth
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


@pytest.mark.parametrize("route", ["/jobs", "/jobs/validate"])
def test_a_spec_nested_1000_deep_is_422_naming_the_spec(api: Api, tmp_path: Path, route: str) -> None:
    model = write_model(tmp_path)
    response = api.client.post(
        route,
        files={"model": (model.name, model.read_bytes())},
        data={"spec": deep_spec()},
        headers=api.token("me"),
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["errors"][0]["field"] == "spec" and "levels deep" in problem["detail"], problem


@pytest.mark.parametrize("role", ["model", "teacher"])
def test_a_safetensors_header_of_100000_brackets_is_415_naming_the_part(
    api: Api, tmp_path: Path, role: str
) -> None:
    deep = deep_safetensors(tmp_path / "deep.safetensors")
    files = {role: (deep.name, deep.read_bytes())}
    if role != "model":
        files["model"] = ("m.safetensors", write_model(tmp_path).read_bytes())
    response = api.client.post("/jobs", files=files, data={"spec": json.dumps(SPEC)}, headers=api.token("me"))
    assert response.status_code == 415, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == role and problem["detail"].startswith(f"{role}: "), problem


def test_a_shard_index_nested_5000_deep_is_415(api: Api, tmp_path: Path) -> None:
    shard = tmp_path / "model-00001-of-00001.safetensors"
    save_file(small_state_dict(), str(shard))
    inner = "[" * 5000 + "]" * 5000
    index = '{"metadata": {"x": ' + inner + '}, "weight_map": {"fc1.weight": "' + shard.name + '"}}'
    files = [
        ("model", (shard.name, shard.read_bytes())),
        ("model", ("model.safetensors.index.json", index.encode())),
    ]
    response = api.client.post("/jobs", files=files, data={"spec": json.dumps(SPEC)}, headers=api.token("me"))
    assert response.status_code == 415, response.text
    assert response.json()["errors"][0]["field"] == "model"
    assert "levels deep" in response.json()["detail"]
