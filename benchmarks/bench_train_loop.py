"""Samples per second of the library's training loop against a bare PyTorch loop, in the same run.

Both train the same model from the same initial weights on the same data with the same optimizer (SGD,
momentum 0.9, Nesterov) and batch size; the bare loop is the fastest plain PyTorch: data on the device once,
a `randperm` per epoch, batches sliced on the device, no `.item()` per step. Ours is
`train_epochs` with a RetrainConfig (it also tracks loss / accuracy per epoch, checks for cancellation and
steps the StepLR schedule). Each is timed over `--epochs` epochs after one warm-up epoch, alternating
(bare, ours, bare, ours, ...) `--repeats` times so load on a shared machine hits both alike; the median is
reported. Target: ours within 5% of the bare loop.

    PYTHONPATH=. python benchmarks/bench_train_loop.py [--arch lenet5] [--batch-size 16] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compression_core.data import load_builtin  # noqa: E402
from compression_core.models import build_model  # noqa: E402
from compression_core.spec.fields import RetrainConfig  # noqa: E402
from compression_core.training.loop import train_epochs  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, epochs: int, lr: float) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    model.train()
    n = len(y)
    for _ in range(epochs):
        order = torch.randperm(n, device=x.device)
        for start in range(0, n, batch):
            index = order[start : start + batch]
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet5")
    parser.add_argument("--data", default="mnist-5k")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per measurement")
    parser.add_argument("--samples", type=int, default=2000, help="training samples used (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    splits = load_builtin(args.data)
    x, y = splits.train.tensors
    if args.samples:
        x, y = x[: args.samples], y[: args.samples]
    dataset = torch.utils.data.TensorDataset(x, y)
    x_dev, y_dev = x.to(device), y.to(device)
    torch.manual_seed(0)
    init = build_model({"arch": args.arch}).state_dict()
    config = RetrainConfig(epochs=args.epochs, lr=0.005, batch_size=args.batch_size, gamma=1.0)

    def fresh() -> nn.Module:
        model = build_model({"arch": args.arch})
        model.load_state_dict(init)
        return model.to(device)

    bare_loop(fresh(), x_dev, y_dev, args.batch_size, 1, 0.005)  # warm-up (kernels, allocator)
    train_epochs(fresh(), dataset, config.model_copy(update={"epochs": 1}), device=device)
    rates: dict[str, list[float]] = {"bare PyTorch loop": [], "ours (train_epochs)": []}
    samples = len(y) * args.epochs
    for _ in range(args.repeats):
        model = fresh()
        _sync(device)
        started = time.perf_counter()
        bare_loop(model, x_dev, y_dev, args.batch_size, args.epochs, 0.005)
        _sync(device)
        rates["bare PyTorch loop"].append(samples / (time.perf_counter() - started))
        model = fresh()
        _sync(device)
        started = time.perf_counter()
        train_epochs(model, dataset, config, device=device)
        _sync(device)
        rates["ours (train_epochs)"].append(samples / (time.perf_counter() - started))
    print(
        f"{args.arch} on {args.data} ({len(y)} samples x {args.epochs} epochs), batch {args.batch_size}, "
        f"{device}, {args.threads} thread(s), median of {args.repeats} alternating runs:"
    )
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, rate in medians.items():
        spread = ", ".join(f"{r:.0f}" for r in rates[name])
        print(f"  {name:22} {rate:9.0f} samples/s   ({spread})")
    ratio = medians["bare PyTorch loop"] / medians["ours (train_epochs)"]
    verdict = "met" if ratio <= 1.05 else "NOT met"
    print(f"  ours is {ratio:.3f}x the bare loop's time per sample (target <= 1.05: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
