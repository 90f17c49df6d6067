"""Streaming data-free compression: peak memory and wall time against model size, and against cores.

Part 1 (`--sizes`, GB): synthetic transformer-shaped checkpoints (bf16 4096x4096 and 4096x11008 /
11008x4096 matrices, the shapes of a 7B model's attention and MLP, plus fp32 norms) in 3 shards in the
Hugging Face layout, compressed with prune 90% (one global ranking) + k=16 + Huffman by
`compress_stream`. Each run is a fresh subprocess; peak RSS is the kernel's: the child's VmHWM from
/proc/self/status at its end (file-backed pages included, the decode check below too), "before
compressing" its VmRSS after the imports (Python + torch + this package), CPU s its user + system time
(imports included; unlike wall time, not stretched by other load on the machine). The baseline is the
in-memory pipeline (`compress_file` on the same tensors merged into one file), run up to
`--baseline-up-to` GB. After each streaming run the `.bin` is decoded record by record and compared bit
for bit with the written shards (`exact`).

Part 2 (`--models`): ResNet-50 and Wide-ResNet-101-2 (torchvision, random init) with the shipped example
`resnet-prune90-k16`, streaming with 1 and 2 workers in the same run, beside the in-memory pipeline.

    PYTHONPATH=. python benchmarks/bench_streaming.py --sizes 6,2,0.5,0.1 --workers 2   # docs/streaming.md
    PYTHONPATH=. python benchmarks/bench_streaming.py --sizes 0.5,2 --workers 1 --baseline-up-to 0 --models ""

Writes a markdown table (stdout and `<out>/streaming.md`) and a plot (`<out>/streaming.png`). Needs about
2.2x the largest size free on the disk of `--out` (input + dense output); everything is removed after each
point unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "rules": [
        {
            "select": {"name": "*", "min_numel": 1024},
            "steps": [{"type": "prune", "sparsity": 0.9, "scope": "global"}, {"type": "quantize", "k": 16}],
        }
    ]
}
SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096)]
INDEX = "model.safetensors.index.json"

_MAKE = r"""
import json, sys, torch
from pathlib import Path
from safetensors.torch import save_file
folder, target, shards = Path(sys.argv[1]), float(sys.argv[2]) * 1e9, 3
shapes = json.loads(sys.argv[3])
names, size, i = [], 0, 0
while size < target or len(names) < shards:
    shape = shapes[i % len(shapes)]
    names.append((f"model.layers.{i // len(shapes)}.w{i % len(shapes)}.weight", shape))
    names.append((f"model.layers.{i // len(shapes)}.w{i % len(shapes)}_norm.weight", [shape[0]]))
    size += 2 * shape[0] * shape[1]
    i += 1
per = -(-len(names) // shards)
weight_map, g = {}, torch.Generator().manual_seed(0)
for s in range(shards):
    file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
    part = {}
    for name, shape in names[s * per : (s + 1) * per]:
        t = torch.randn(*shape, generator=g)
        part[name] = (t * 0.02).to(torch.bfloat16) if len(shape) == 2 else t.abs()
        weight_map[name] = file
    save_file(part, str(folder / file), metadata={"format": "pt"})
    del part
(folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": size},
    "weight_map": weight_map}))
print(size)
"""

_RUN = r"""
import json, sys, time, torch
from dataclasses import replace
from pathlib import Path
from compression_core.spec import parse_spec
mode, model, out, workers = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
spec = parse_spec(sys.argv[5])
with open('/proc/self/status') as s:  # the interpreter + torch + this package, before any tensor
    base = next(int(l.split()[1]) * 1024 for l in s if l.startswith('VmRSS'))
start = time.perf_counter()
if mode == "stream":
    from compression_core.streaming.pipeline import compress_stream
    metrics = compress_stream(model, spec, out, workers=workers)
    ratio, bin_bytes = metrics["totals"]["ratio"], metrics["files"]["model_bin_bytes"]
else:  # the in-memory path data-free jobs took before streaming: load all, compress, encode, decode, write
    torch.set_num_threads(workers)
    from compression_core.format import decode_state_dict, encode_records
    from compression_core.io import atomic_write_bytes, load_state_dict, save_state_dict
    from compression_core.job.pipeline import compress_state_dict
    state = load_state_dict(model)
    records, metrics = compress_state_dict(state, spec)
    encoded = encode_records([replace(r, stats={}) for r in records], metadata={})
    decoded = decode_state_dict(encoded.data)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "model.bin", encoded.data)
    save_state_dict(decoded, out / "model.pth")
    bin_bytes = len(encoded.data)
    ratio = metrics["totals"]["original_bits"] / (8 * bin_bytes)
seconds = time.perf_counter() - start
import resource
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime  # whole process: robust to other load on the machine, unlike wall
exact = None
if mode == "stream" and len(sys.argv) > 6:
    from safetensors import safe_open
    from compression_core.format.stream import iter_records
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    exact = True
    for record, _ in iter_records(out / "model.bin", max_elements=1 << 40):
        with safe_open(str(out / index[record.name]), "pt") as handle:
            exact = exact and torch.equal(handle.get_tensor(record.name), record.reconstruct())
        del record
result = {"seconds": seconds, "cpu": cpu, "base": base, "ratio": ratio, "exact": exact}
print(json.dumps({**result, "bin": bin_bytes}))
"""


def run_child(script: str, *args: str, threads: int = 1) -> str:
    """Last stdout line of a fresh interpreter running `script`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout.strip().splitlines()[-1]


def peak_of(script: str, *args: str, threads: int = 1) -> tuple[dict[str, Any], int]:
    """Run in a child that reports its own VmHWM (ru_maxrss of children is a running maximum)."""
    wrapped = script + (
        "\nwith open('/proc/self/status') as s:\n"
        "    hwm = next(int(l.split()[1]) * 1024 for l in s if l.startswith('VmHWM'))\n"
        "print(json.dumps({'vmhwm': hwm}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", wrapped, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-2]), json.loads(lines[-1])["vmhwm"]


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def size_point(gb: float, args: argparse.Namespace) -> list[dict[str, Any]]:
    work = args.out / f"size-{gb}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    need = int(2.3 * gb * 1e9)
    if disk_free(args.out) < need:
        raise SystemExit(f"{gb} GB needs {need / 1e9:.1f} GB free under {args.out}")
    model_bytes = int(run_child(_MAKE, str(work / "in"), str(gb), json.dumps(SHAPES)))
    largest = 2 * 4096 * 11008
    rows = []
    try:
        for workers in args.workers:
            result, peak = peak_of(
                _RUN,
                "stream",
                str(work / "in"),
                str(work / f"out{workers}"),
                str(workers),
                json.dumps(SPEC),
                "verify",
                threads=1,
            )
            rows.append(
                {
                    "what": "streaming",
                    "gb": gb,
                    "bytes": model_bytes,
                    "workers": workers,
                    "peak": peak,
                    "largest": largest,
                    **result,
                }
            )
            shutil.rmtree(work / f"out{workers}", ignore_errors=True)
        if gb <= args.baseline_up_to:
            merged = work / "merged.safetensors"
            run_child(
                "import sys; from pathlib import Path; from safetensors.torch import save_file; "
                "from compression_core.streaming.source import open_source; s = open_source(sys.argv[1]); "
                "save_file({i.name: s.load(i.name) for i in s.infos}, sys.argv[2]); print('ok')",
                str(work / "in"),
                str(merged),
            )
            result, peak = peak_of(_RUN, "memory", str(merged), str(work / "outmem"), "1", json.dumps(SPEC))
            rows.append(
                {
                    "what": "in-memory (baseline)",
                    "gb": gb,
                    "bytes": model_bytes,
                    "workers": 1,
                    "peak": peak,
                    "largest": largest,
                    **result,
                }
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def model_point(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    work = args.out / f"model-{name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    run_child(
        "import sys, torchvision; from safetensors.torch import save_file; "
        "m = getattr(torchvision.models, sys.argv[1])(weights=None); "
        "save_file({k: v.contiguous() for k, v in m.state_dict().items()}, sys.argv[2]); print('ok')",
        name,
        str(work / "model.safetensors"),
    )
    spec = (ROOT / "compression_core/examples/resnet-prune90-k16.json").read_text()
    rows = []
    model_bytes = (work / "model.safetensors").stat().st_size
    try:
        for workers in (1, 2):
            result, peak = peak_of(
                _RUN, "stream", str(work / "model.safetensors"), str(work / f"o{workers}"), str(workers), spec
            )
            rows.append(
                {
                    "what": f"{name} streaming",
                    "gb": model_bytes / 1e9,
                    "bytes": model_bytes,
                    "workers": workers,
                    "peak": peak,
                    **result,
                }
            )
        for threads in (1, 2):
            result, peak = peak_of(
                _RUN,
                "memory",
                str(work / "model.safetensors"),
                str(work / f"m{threads}"),
                str(threads),
                spec,
                threads=threads,
            )
            rows.append(
                {
                    "what": f"{name} in-memory (baseline)",
                    "gb": model_bytes / 1e9,
                    "bytes": model_bytes,
                    "workers": threads,
                    "peak": peak,
                    **result,
                }
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| run | model GB | workers | peak RSS GiB | of it before compressing | wall s | s per GB | CPU s "
        "| ratio | exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gb = r["bytes"] / 1e9
        lines.append(
            f"| {r['what']} | {gb:.2f} | {r['workers']} | {r['peak'] / 2**30:.2f} | "
            f"{r['base'] / 2**30:.2f} | "
            f"{r['seconds']:.1f} | {r['seconds'] / gb:.0f} | {r['cpu']:.1f} | {r['ratio']:.1f}x | "
            f"{'-' if r['exact'] is None else r['exact']} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, wall) = plt.subplots(1, 2, figsize=(10, 4))
    for what in dict.fromkeys(r["what"] for r in rows if r["what"] == "streaming"):
        for workers in sorted({r["workers"] for r in rows if r["what"] == what}):
            pts = sorted(
                (r["bytes"] / 1e9, r["peak"] / 2**30, r["seconds"], r["cpu"])
                for r in rows
                if r["what"] == what and r["workers"] == workers
            )
            mem.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{what}, {workers} workers")
            wall.plot(
                [p[0] for p in pts], [p[2] for p in pts], "o-", label=f"{what}, {workers} workers: wall"
            )
            wall.plot([p[0] for p in pts], [p[3] for p in pts], "o:", label=f"{what}, {workers} workers: CPU")
    base = sorted(
        (r["bytes"] / 1e9, r["peak"] / 2**30, r["seconds"])
        for r in rows
        if r["what"] == "in-memory (baseline)"
    )
    if base:
        mem.plot([p[0] for p in base], [p[1] for p in base], "s--", label="in-memory (baseline)")
        wall.plot([p[0] for p in base], [p[2] for p in base], "s--", label="in-memory (baseline)")
    mem.set(xlabel="model size (GB)", ylabel="peak RSS (GiB)", title="memory")
    wall.set(xlabel="model size (GB)", ylabel="seconds", title="time (wall, and CPU: load-independent)")
    mem.legend(fontsize=7)
    wall.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="0.1,0.5,2,6", help="comma-separated model sizes in GB")
    parser.add_argument("--models", default="resnet50,wide_resnet101_2", help="torchvision models ('' none)")
    parser.add_argument("--workers", default="1,2", help="pool sizes for the size sweep")
    parser.add_argument("--baseline-up-to", type=float, default=0.5, help="largest size run in memory too")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-streaming"))
    parser.add_argument("--keep", action="store_true", help="keep the generated checkpoints and outputs")
    args = parser.parse_args()
    args.workers = [int(w) for w in args.workers.split(",") if w]
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for gb in [float(s) for s in args.sizes.split(",") if s]:
        rows += size_point(gb, args)
        print(table(rows[-3:]), flush=True)
    for name in [m for m in args.models.split(",") if m]:
        rows += model_point(name, args)
        print(table(rows[-4:]), flush=True)
    end = os.getloadavg()
    text = (
        f"load average {load[0]:.1f} at start, {end[0]:.1f} at the end, on {os.cpu_count()} cores\n\n"
        + table(rows)
    )
    print("\n" + text)
    (args.out / "streaming.md").write_text(text + "\n")
    (args.out / "streaming.json").write_text(json.dumps(rows, indent=1))
    if any(r["what"] == "streaming" for r in rows):
        plot(rows, args.out / "streaming.png")


if __name__ == "__main__":
    main()
