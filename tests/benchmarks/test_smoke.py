"""Every benchmark still runs end to end: each at its smallest size (`Benchmark.smoke`, what
`python benchmarks/run_all.py --all --smoke` runs). The numbers they print mean nothing at these sizes;
the figures README and docs quote come from the full commands printed beside them."""

from __future__ import annotations

import importlib.util
import os
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


BENCHMARKS = _run_all().BENCHMARKS


@pytest.mark.slow
@pytest.mark.timeout(900)  # the service benchmarks start worker processes; a loaded 2-core CI is slow
@pytest.mark.parametrize("benchmark", BENCHMARKS, ids=[b.name for b in BENCHMARKS])
def test_the_benchmark_runs_at_its_smallest_size(benchmark, tmp_path: Path) -> None:
    assert benchmark.smoke, f"{benchmark.name} has no smallest-size arguments"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(benchmark.path), *benchmark.smoke],
        cwd=tmp_path,  # whatever a script writes beside itself stays out of the checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.stdout.strip()
