"""Seed 003's table: what structured pruning and int8 do where the model runs, each beside the
uncompressed model in the same run.

Run from the repository root:  PYTHONPATH=. python benchmarks/bench_deploy.py [--size 224] [--threads 1]

1. torchvision ResNet-18 and MobileNetV2 (random weights, data-free): every convolution loses 20% and 50%
   of its output channels with Torch-Pruning (L1 importance, coupled layers together, the classifier kept).
   Parameters, file bytes (.pth state dict, .onnx), peak runtime memory, p50/p90 latency per sample at batch
   1 and at a throughput batch, in PyTorch eager and in onnxruntime with the same thread count.
2. LeNet-5 on mnist-5k (trained here for a few epochs, 4,000 train / 1,000 test digits): the trained model,
   int8 (onnxruntime QDQ, per-channel, 256 calibration digits), 50% structured + 1 epoch of fine-tuning, and
   that model in int8, all through the job pipeline (`compress_file`), with top-1/top-5 error.
3. int8 route: onnxruntime QDQ is measured; PyTorch's PT2E x86 flow is measured when importable (torch 2.14
   moved it to torchao); otherwise the table says so.
CUDA: with a GPU, every PyTorch row is measured on it too (column "cuda p50"); without one it says "no GPU".
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from compression_core.channels import count_parameters
from compression_core.deploy.onnx_export import export_onnx
from compression_core.deploy.pruning import PruneTarget, prune_structured
from compression_core.deploy.table import MeasureOptions, deployment_table, onnx_candidate, torch_candidate
from compression_core.io import load_state_dict, save_state_dict
from compression_core.models import build_model


def human(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    return str(n)


def lat(row: dict[str, Any], which: str, key: str = "p50_ms_per_sample") -> str:
    return f"{row['latency'][which][key]:.2f}"


def print_table(
    title: str, columns: list[tuple[str, dict[str, Any]]], batch: int, cuda: dict[str, float]
) -> None:
    """Seed 003's layout: criteria as rows, one column per model (PyTorch and onnxruntime rows merged)."""
    print(f"\n### {title}\n")
    print("| criterion | " + " | ".join(name for name, _ in columns) + " |")
    print("| --- |" + " --- |" * len(columns))

    def line(label: str, cell: Any) -> None:
        print(f"| {label} | " + " | ".join(cell(c) for _, c in columns) + " |")

    line("Parameters", lambda c: f"{c['params'] / 1e6:.2f}M" if c["params"] > 1e5 else f"{c['params']:,}")
    line("File size (.pth / .onnx)", lambda c: f"{human(c['pth_bytes'])} / {human(c['onnx_bytes'])}")
    if any("errors" in c for _, c in columns):
        line(
            "Top-1 error",
            lambda c: (
                f"{100 * c['errors']['top1_error']:.2f}% "
                f"({c['errors']['top1_wrong']}/{c['errors']['samples']})"
                if "errors" in c
                else "-"
            ),
        )
        line("Top-5 error", lambda c: f"{100 * c['errors']['top5_error']:.2f}%" if "errors" in c else "-")
    line(
        "Runtime memory, PyTorch / ORT", lambda c: f"{human(c.get('mem_torch'))} / {human(c.get('mem_ort'))}"
    )
    line("ms/sample batch 1 p50, PyTorch / ORT", lambda c: f"{c['b1_torch']} / {c['b1_ort']}")
    line("ms/sample batch 1 p90, PyTorch / ORT", lambda c: f"{c['b1_torch_p90']} / {c['b1_ort_p90']}")
    line(f"ms/sample batch {batch} p50, PyTorch / ORT", lambda c: f"{c['bn_torch']} / {c['bn_ort']}")
    line(
        "ms/sample batch 1 p50, CUDA (PyTorch)",
        lambda c: f"{cuda[c['key']]:.3f}" if c["key"] in cuda else "no GPU",
    )


def merge(key: str, rows: list[dict[str, Any]], pth: Path | None, onnx: Path | None) -> dict[str, Any]:
    torch_row = next((r for r in rows if r["runtime"] == "pytorch"), None)
    ort_row = next((r for r in rows if r["runtime"] == "onnxruntime"), None)
    base = torch_row or ort_row
    assert base is not None
    out: dict[str, Any] = {
        "key": key,
        "params": base["params"],
        "pth_bytes": pth.stat().st_size if pth else None,
        "onnx_bytes": onnx.stat().st_size if onnx else None,
        "mem_torch": torch_row["peak_memory_bytes"] if torch_row else None,
        "mem_ort": ort_row["peak_memory_bytes"] if ort_row else None,
    }
    for name, row in (("torch", torch_row), ("ort", ort_row)):
        out[f"b1_{name}"] = lat(row, "batch1") if row else "-"
        out[f"b1_{name}_p90"] = lat(row, "batch1", "p90_ms_per_sample") if row else "-"
        out[f"bn_{name}"] = lat(row, "throughput") if row else "-"
    errors = (ort_row or {}).get("errors") or (torch_row or {}).get("errors")
    if errors:
        out["errors"] = errors
    return out


def cuda_latency(model: nn.Module, example: torch.Tensor, runs: int) -> float | None:
    if not torch.cuda.is_available():
        return None
    from compression_core.deploy.measure import latency

    module = copy.deepcopy(model).cuda().eval()
    x = example.cuda()
    with torch.no_grad():
        result = latency(lambda: module(x), 1, runs=runs, warmup=5, sync=torch.cuda.synchronize)
    return result["p50_ms_per_sample"]


def bench_torchvision(arch: str, size: int, options: MeasureOptions, threads: int, tmp: Path) -> None:
    torch.manual_seed(0)
    spec = {"arch": arch, "kwargs": {}}
    original = build_model(spec).eval()
    example = torch.zeros(1, 3, size, size)
    inputs = torch.randn(options.throughput_batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    columns, cuda = [], {}
    for sparsity in (0.0, 0.2, 0.5):
        key = "original" if sparsity == 0 else f"{int(100 * sparsity)}% channels"
        model = copy.deepcopy(original)
        started = time.perf_counter()
        if sparsity:
            convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
            prune_structured(model, example, [PruneTarget(n, sparsity, 0) for n in convs])
        prune_s = time.perf_counter() - started
        folder = tmp / f"{arch}-{key.split('%')[0]}"
        folder.mkdir()
        save_state_dict({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.pth")
        export_onnx(model, example, folder / "model.onnx")
        frozen = copy.deepcopy(model)
        candidates = [
            torch_candidate(
                key, folder / "model.pth", count_parameters(model), lambda f=frozen, p=folder: _reload(f, p)
            ),
            onnx_candidate(key, folder / "model.onnx", count_parameters(model), threads),
        ]
        table = deployment_table(candidates, inputs, None, options)
        columns.append((key, merge(key, table["rows"], folder / "model.pth", folder / "model.onnx")))
        if (c := cuda_latency(model, torch.randn(1, 3, size, size), 50)) is not None:
            cuda[key] = c
        print(f"  {arch} {key}: pruned in {prune_s:.1f} s, measured", flush=True)
    print_table(
        f"{arch}, random weights, input 3x{size}x{size}, {threads} thread(s)",
        columns,
        options.throughput_batch,
        cuda,
    )


def _reload(frozen: nn.Module, folder: Path) -> nn.Module:
    """A module of the pruned shapes, weights read back from its model.pth (what a deployment loads)."""
    module = copy.deepcopy(frozen)
    module.load_state_dict(load_state_dict(folder / "model.pth"), strict=True)
    return module


def train_lenet5(epochs: int) -> tuple[Path, Any]:
    from compression_core.data import load_builtin

    data = load_builtin("mnist-5k")
    torch.manual_seed(0)
    model = build_model({"arch": "lenet5"})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data.train.tensors
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            batch = order[i : i + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    path = Path(tempfile.mkdtemp(prefix="bench-deploy-")) / "lenet5.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, data


def bench_lenet5(epochs: int, tmp: Path) -> None:
    from compression_core.job.pipeline import compress_file
    from compression_core.spec import parse_spec

    path, _ = train_lenet5(epochs)
    base = {"model": {"arch": "lenet5"}, "data": {"builtin": "mnist-5k"}}
    structured = {
        "rules": [
            {
                "select": {"name": ["conv1.weight", "conv2.weight", "fc1.weight"]},
                "steps": [{"type": "structured", "sparsity": 0.5}],
            }
        ],
        "retrain": {"finetune": {"epochs": 1, "lr": 0.001, "optimizer": "adam", "batch_size": 64}},
    }
    jobs = {
        "int8": {**base, "int8": {"calibration_samples": 256}},
        "50% + int8": {**base, **structured, "int8": {"calibration_samples": 256}},
    }
    columns: list[tuple[str, dict[str, Any]]] = []
    for name, spec in jobs.items():
        out = tmp / name.replace(" ", "").replace("%", "").replace("+", "-")
        started = time.perf_counter()
        metrics = compress_file(path, parse_spec(json.dumps(spec)), out)
        print(f"  lenet5 job {name!r}: {time.perf_counter() - started:.1f} s", flush=True)
        rows = metrics["deployment"]["table"]["rows"]
        by = {r["name"]: r for r in rows}
        if not columns:
            columns.append(
                ("original", merge("original", [by["original"], by["original (ONNX)"]], path, None))
            )
            columns[-1][1]["onnx_bytes"] = by["original (ONNX)"]["file_bytes"]
        if name == "50% + int8":
            columns.append(
                (
                    "50% + 1 epoch",
                    merge("50", [by["model.pth"], by["model.onnx"]], out / "model.pth", out / "model.onnx"),
                )
            )
        columns.append((name, merge(name, [by["model.int8.onnx"]], None, out / "model.int8.onnx")))
        if name == "int8":
            print(
                f"  int8 layers: {metrics['deployment']['int8']['quantized']}, "
                f"float: {metrics['deployment']['int8']['float']}"
            )
    print_table("LeNet-5 on mnist-5k (1,000 test digits), 1 thread", columns, 32, {})


def pt2e_note() -> str:
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: F401
    except ImportError:
        try:
            from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: F401
        except ImportError:
            return (
                f"PT2E x86: not measured: torch {torch.__version__} has no "
                "torch.ao.quantization.quantize_pt2e "
                "and torchao is not installed; onnxruntime QDQ is the route (it also runs the file we check)."
            )
    return "PT2E x86: importable, comparison not implemented in this benchmark"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="input side for ResNet-18 / MobileNetV2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16, help="the throughput batch")
    parser.add_argument("--runs", type=int, default=20, help="timed passes at batch 1")
    parser.add_argument("--epochs", type=int, default=3, help="LeNet-5 training epochs")
    parser.add_argument("--only", choices=["resnet18", "mobilenet_v2", "lenet5"], action="append")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = MeasureOptions(
        throughput_batch=args.batch, runs_batch1=args.runs, runs_throughput=max(3, args.runs // 4)
    )
    print(f"torch {torch.__version__}, {args.threads} thread(s), CUDA: {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        for arch in ("resnet18", "mobilenet_v2"):
            if not args.only or arch in args.only:
                bench_torchvision(arch, args.size, options, args.threads, Path(tmp))
        if not args.only or "lenet5" in args.only:
            bench_lenet5(args.epochs, Path(tmp))
    print("\n" + pt2e_note())
    print(
        "Memory: VmHWM rise while loading the file and running one throughput batch, in-process (a lower "
        "bound); CPU timings on a shared machine vary run to run."
    )


if __name__ == "__main__":
    main()
