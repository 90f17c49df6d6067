"""`make bench` runs benchmarks/run_all.py, which names only scripts that exist and forgets none."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_make_bench_names_scripts_that_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^bench:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert target, "Makefile has no bench target"
    scripts = re.findall(r"benchmarks/[\w/]+\.py", target.group(1))
    assert scripts and all((ROOT / s).is_file() for s in scripts), scripts


def test_every_benchmark_is_listed_and_every_listed_one_exists() -> None:
    run_all = _run_all()
    listed = {b.script for b in run_all.BENCHMARKS}
    on_disk = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - {"run_all.py"}
    assert listed == on_disk
    assert all(b.path.is_file() for b in run_all.BENCHMARKS)
    quick = [b.name for b in run_all.selected(False, [])]
    assert quick and "reproduce_lc" not in quick  # the long ones only with --all
    assert [b.name for b in run_all.selected(True, [])] == [b.name for b in run_all.BENCHMARKS]


def test_an_unknown_name_is_refused_before_anything_runs() -> None:
    with pytest.raises(SystemExit, match="unknown benchmark.*no_such_bench"):
        _run_all().selected(False, ["no_such_bench"])
    listing = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0 and "bench_core" in listing.stdout
