"""Streaming a multi-tensor file keeps the process's peak memory near one tensor's working set.

Measured in a fresh subprocess with the kernel's own accounting (VmHWM, the resident high-water mark,
file-backed pages included): a warm-up job on a one-tensor file first loads the libraries' code and
caches, then the high-water mark is reset and a model of many tensors is compressed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TENSORS, ROWS, COLS = 32, 1024, 1024  # 32 float32 tensors of 4 MiB: a 128 MiB model
TENSOR_BYTES = ROWS * COLS * 4
BOUND = 20 * TENSOR_BYTES  # prune + k-means + coding + decoding + metrics of one tensor, with slack

_SCRIPT = """
import json, sys, torch
from pathlib import Path
from safetensors.torch import save_file
from compression_core.spec import parse_spec
from compression_core.streaming.pipeline import compress_stream

def high_water():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM"))

def reset_high_water():
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")

folder, tensors, rows, cols = Path(sys.argv[1]), *map(int, sys.argv[2:5])
g = torch.Generator().manual_seed(0)
for count, name in ((1, "warm"), (tensors, "model")):
    save_file({f"l{i}.weight": torch.randn(rows, cols, generator=g) for i in range(count)},
              str(folder / f"{name}.safetensors"))
spec = parse_spec(json.dumps({"rules": [{"steps": [
    {"type": "prune", "sparsity": 0.9, "scope": "global"}, {"type": "quantize", "k": 16}]}]}))
compress_stream(folder / "warm.safetensors", spec, folder / "warm-out", workers=1)
reset_high_water()
before = high_water()
compress_stream(folder / "model.safetensors", spec, folder / "out", workers=1)
print(json.dumps({"before": before, "peak": high_water()}))
"""


def test_peak_memory_follows_the_largest_tensor_not_the_model(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path), str(TENSORS), str(ROWS), str(COLS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    growth = measured["peak"] - measured["before"]
    model_bytes = TENSORS * TENSOR_BYTES
    assert growth < BOUND, f"peak grew by {growth / 2**20:.0f} MiB, bound {BOUND / 2**20:.0f} MiB"
    assert model_bytes > BOUND  # the bound means something: the model itself would not fit in it
