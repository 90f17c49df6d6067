"""Deeply nested JSON in a spec file, a safetensors header, a shard index or an architecture record is a
typed library error (and one red line from the CLI), never a RecursionError (issue 21, item 7)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from safetensors.torch import save_file
from typer.testing import CliRunner

from compression_core.deploy.architecture import load_model
from compression_core.errors import InputError, SpecError
from compression_core.inspect_upload import inspect_state_dict
from compression_core.jsonbound import JSONDepthError, loads_bounded, nesting_depth
from compression_core.spec.parse import load_spec, parse_spec
from compression_core.streaming.source import open_source
from mcs.app import app

from .conftest import lenet5_state_dict

SHARD = "model-00001-of-00001.safetensors"
DEEP = "[" * 100_000 + "]" * 100_000


def deep_safetensors(path: Path) -> Path:
    path.write_bytes(struct.pack("<Q", len(DEEP)) + DEEP.encode())
    return path


def test_nesting_depth_and_loads_bounded() -> None:
    assert nesting_depth(1) == 0 and nesting_depth([]) == 1 and nesting_depth({"a": [[1], {}]}) == 3
    assert loads_bounded('{"a": [1]}', 2, "x") == {"a": [1]}
    with pytest.raises(JSONDepthError, match="more than 2 levels"):
        loads_bounded('{"a": [[1]]}', 2, "x")
    with pytest.raises(JSONDepthError):
        loads_bounded(DEEP, 64, "x")


def test_a_deep_spec_is_a_spec_error(tmp_path: Path) -> None:
    text = '{"model": {"arch": "lenet5", "kwargs": {"x": ' + "[" * 1000 + "]" * 1000 + "}}}"
    with pytest.raises(SpecError, match="levels deep"):
        parse_spec(text)
    path = tmp_path / "spec.json"
    path.write_text(text)
    with pytest.raises(SpecError, match="levels deep"):
        load_spec(path)


def test_a_deep_safetensors_header_and_index_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="levels deep"):
        inspect_state_dict(deep_safetensors(tmp_path / "deep.safetensors"))
    with pytest.raises(InputError, match="levels deep"):
        open_source(tmp_path / "deep.safetensors")
    folder = tmp_path / "sharded"
    folder.mkdir()
    save_file({"w": lenet5_state_dict()["fc2.bias"]}, str(folder / SHARD))
    index = '{"metadata": ' + "[" * 5000 + "]" * 5000 + ', "weight_map": {"w": "' + SHARD + '"}}'
    (folder / "model.safetensors.index.json").write_text(index)
    with pytest.raises(InputError, match="levels deep"):
        open_source(folder)


def test_load_model_refuses_a_deep_architecture_record(tmp_path: Path) -> None:
    (tmp_path / "architecture.json").write_text(
        '{"format": "mcs-architecture", "version": 1, "model": ' + "[" * 5000 + "]" * 5000 + "}"
    )
    with pytest.raises(InputError, match="levels deep"):
        load_model(tmp_path)


def test_mcs_check_answers_one_line_for_deep_json(tmp_path: Path) -> None:
    model = tmp_path / "lenet5.safetensors"
    save_file(lenet5_state_dict(), str(model))
    spec = tmp_path / "spec.json"
    spec.write_text('{"model": {"arch": "lenet5", "kwargs": {"x": ' + "[" * 5000 + "]" * 5000 + "}}}")
    runner = CliRunner()
    result = runner.invoke(app, ["check", str(model), "--spec", str(spec)])
    assert result.exit_code == 2 and "levels deep" in result.output, result.output
    assert "Traceback" not in result.output
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"model": {"arch": "lenet5"}}))
    result = runner.invoke(app, ["check", str(deep_safetensors(tmp_path / "d.safetensors")), "-s", str(good)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
