"""Peak memory of `mcs compress index.json` on a sharded bf16 checkpoint, beside its bound (issue 20).

The checkpoint is the issue's: 4 shards, each two 11008x4096 and one 4096x4096 bf16 matrices (0.82 GB; a
7B model's MLP and attention shapes), compressed with prune 50% + k=16 (+ Huffman) through the CLI, with
1 and 2 workers. Each run is a fresh `python -m mcs compress` whose peak is the kernel's ru_maxrss for that
child alone (`os.wait4`); the baseline is `python -c "import torch"` measured the same way. The target:

    peak <= baseline + 8 bytes x (entries of the largest tensor) x workers + 200 MB

(8 bytes per entry: the tensor widened to float32 plus its working copy; a 7B model's 32000x4096
embedding then fits a 4 GB worker). The script prints every run beside its bound; `--check` makes it exit
1 when a run is over (a benchmark target, not a test: the suite's smoke test runs `--scale 0.02`).

    PYTHONPATH=. python benchmarks/bench_bf16_shards.py                 # the issue's size, 1 and 2 workers
    PYTHONPATH=. python benchmarks/bench_bf16_shards.py --scale 0.02    # smoke: 1/50 of each side
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARDS = 4
SHAPES = [(11008, 4096), (4096, 11008), (4096, 4096)]  # per shard: two MLP matrices and one attention
SPEC = {
    "rules": [
        {
            "select": {"name": "*", "min_numel": 1024},
            "steps": [{"type": "prune", "sparsity": 0.5}, {"type": "quantize", "k": 16}],
        }
    ]
}
MB = 1e6

_MAKE = r"""
import json, sys, torch
from pathlib import Path
from safetensors.torch import save_file
folder, shards, shapes = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
g = torch.Generator().manual_seed(0)
weight_map, total = {}, 0
for s in range(shards):
    name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
    tensors = {}
    for j, shape in enumerate(shapes):
        key = f"model.layers.{s}.w{j}.weight"
        tensors[key] = (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)
        weight_map[key] = name
        total += tensors[key].numel() * 2
    save_file(tensors, str(folder / name), metadata={"format": "pt"})
    del tensors
index = {"metadata": {"total_size": total}, "weight_map": weight_map}
(folder / "model.safetensors.index.json").write_text(json.dumps(index))
print(total)
"""


def peak_rss(command: list[str], env: dict[str, str]) -> int:
    """ru_maxrss of this child alone, in bytes (wait4 reports the one process it reaps)."""
    child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output.decode(errors='replace')[-3000:]}")
    return int(usage.ru_maxrss) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="each side of each matrix times this")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a run's peak is over its bound")
    args = parser.parse_args()
    shapes = [(max(1, round(r * args.scale)), max(1, round(c * args.scale))) for r, c in SHAPES]
    largest = max(r * c for r, c in shapes)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    work = Path(tempfile.mkdtemp(prefix="bench-bf16-", dir=args.out))
    try:
        (work / "in").mkdir()
        made = subprocess.run(
            [sys.executable, "-c", _MAKE, str(work / "in"), str(SHARDS), json.dumps(shapes)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        model_bytes = int(made.stdout.strip().splitlines()[-1])
        (work / "spec.json").write_text(json.dumps(SPEC))
        baseline = peak_rss([sys.executable, "-c", "import torch"], env)
        print(
            f"{SHARDS} bf16 shards of {' + '.join(f'{r}x{c}' for r, c in shapes)}: "
            f"{model_bytes / MB:.0f} MB; largest tensor {largest:,} entries; prune 50% + k=16"
        )
        print(f"baseline (python -c 'import torch'): peak {baseline / MB:.0f} MB")
        print("| workers | peak MB | bound MB | baseline + 8 B/entry x workers + 200 MB | target |")
        print("|---|---|---|---|---|")
        over = False
        for workers in (int(w) for w in args.workers.split(",")):
            out = work / f"out-{workers}"
            peak = peak_rss(
                [sys.executable, "-m", "mcs", "compress", str(work / "in" / "model.safetensors.index.json")]
                + ["--spec", str(work / "spec.json"), "-o", str(out), "--workers", str(workers)],
                env,
            )
            bound = baseline + 8 * largest * workers + 200 * MB
            met = peak <= bound
            over |= not met
            print(
                f"| {workers} | {peak / MB:.0f} | {bound / MB:.0f} | {baseline / MB:.0f} + "
                f"{8 * largest * workers / MB:.0f} + 200 | {'met' if met else 'NOT met'} |"
            )
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.check and over:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
