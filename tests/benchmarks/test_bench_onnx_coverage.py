"""bench_onnx_coverage's bookkeeping for long, parallel, resumable runs (no model is run here): claims
shared by parallel runs, a stopped run's claim taken over, rows files merged in size order (a later file's
row wins), a timeout reported as a row."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    path = ROOT / "benchmarks" / "bench_onnx_coverage.py"
    spec = importlib.util.spec_from_file_location("bench_onnx_coverage", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_onnx_coverage"] = module
    spec.loader.exec_module(module)
    return module


def test_a_claim_is_taken_once_and_taken_over_when_its_run_is_gone(tmp_path):
    bench = _bench()
    assert bench._claim(tmp_path, "resnet18")
    assert not bench._claim(tmp_path, "resnet18")  # this process is alive: claimed
    (tmp_path / "resnet18" / "pid").write_text("999999999")  # a run that no longer exists
    assert bench._claim(tmp_path, "resnet18")
    assert (tmp_path / "resnet18" / "pid").read_text() == str(os.getpid())


def test_rows_files_merge_in_size_order_and_a_later_row_wins(tmp_path):
    bench = _bench()
    first = tmp_path / "a.json"
    first.write_text(json.dumps([{"model": "big", "export": "ok"}, {"model": "small", "export": "old"}]))
    log = tmp_path / "run.txt"
    log.write_text('torch ...\n{"model": "small", "export": "ok"}\n| a table line |\n')
    rows = bench._merged([bench._log_rows(first), bench._log_rows(log)], [("small", 1), ("big", 2)])
    assert rows == [{"model": "small", "export": "ok"}, {"model": "big", "export": "ok"}]


def test_a_model_past_its_bound_is_a_timeout_row():
    bench = _bench()
    args = argparse.Namespace(size=8, threads=1, max_params=1e8, timeout=0.01, memory_limit_gb=0)
    row = bench._child("resnet18", 11, args)
    assert row["model"] == "resnet18" and row["export"].startswith("timeout after")


def test_a_model_past_its_memory_bound_is_a_row_not_an_oom_kill():
    """`--memory-limit-gb`: the child's anonymous memory is capped (RLIMIT_DATA), so running out is an
    error in its row (here already while importing torch), and the parent goes on."""
    bench = _bench()
    args = argparse.Namespace(size=8, threads=1, max_params=1e8, timeout=300, memory_limit_gb=0.05)
    row = bench._child("resnet18", 11, args)
    assert row["model"] == "resnet18" and row["export"].startswith("crashed, exit 1"), row
    assert "MemoryError" in row["export"] or "memory" in row["export"].lower(), row
