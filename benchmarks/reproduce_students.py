"""Reproduce seed 002's SqueezeNet route and seed 004's knowledge-distillation table on MNIST-like data.

Seed 002 (MNIST, 20 epochs): LeNet original 269 KB at 99.07% vs squeezed (Fire modules) 72 KB at 98.42%;
VGG original 79 MB at 97.85% vs squeezed 2.9 MB at 99.6%.
Seed 004 (CIFAR-10): VGG-13 teacher (9,416,010 parameters) 85.5%, Custom MiniVGG student alone (1,575,690)
79.7%, the student with KD from VGG-13 81.4% (+1.7 points).

Here, per data set (`mnist-5k`, `fashion-mnist`) and family, with ONE schedule for all three runs:
- the original (`lenet5`, `vgg-small`) trained alone: it is also the teacher;
- the Fire-module student (`squeezenet-lenet5` with LeNet-5's fc1/fc2 head, the same with SqueezeNet's
  1x1-conv + average-pool head (family `lenet-squeeze-head`), `squeezenet-vgg`; see
  compression_core/models/squeeze.py) trained alone; family `torchvision`: torchvision's SqueezeNet 1.1
  with a gray, stride-1 stem (`squeezenet1_1-mnist`, 726,474 parameters = 2.9 MB, the size of seed 002's
  squeezed VGG) as the student of `vgg-small`; run it with `--lr 5e-4` (at 2e-3 its ReLU'd logits die in
  the first epoch);
- the same student distilled from that original (methods/distill: alpha·T²·KL + (1-alpha)·CE),
  for every (T, alpha) of the grid.
Families that share an original train it once per data set (same seed and schedule, so the same weights).
The teacher passed to KD is the original's best-validation epoch, in eval mode; the KD loss carries the T²
factor (see methods/distill). Every choice (the epoch each run keeps, and T/alpha) is made on the validation
split; the test split is only reported, with its sample count. Model size: float32 bytes of the state dict.

    PYTHONPATH=. python benchmarks/reproduce_students.py [--data mnist-5k fashion-mnist]
        [--families lenet vgg] [--epochs 3 --train-limit 2000 --grid 4:0.9 2:0.5]

A full run: `--epochs 20` (seed 002's count), no `--train-limit`, `--grid 2:0.5 4:0.5 4:0.9 8:0.9`; on this
2-core CPU expect hours for fashion-mnist's 54,000 images (vgg-small: ~100 images/s per training pass).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.bench_data import bench_data, describe  # noqa: E402

from compression_core.data import DataSplits  # noqa: E402
from compression_core.evaluate import evaluate  # noqa: E402
from compression_core.methods.distill.algorithm import DistillSpec, distill  # noqa: E402
from compression_core.models import build_model  # noqa: E402
from compression_core.spec.fields import RetrainConfig  # noqa: E402
from compression_core.training.loop import EpochStats, train_epochs  # noqa: E402

ModelSpecDict = dict[str, object]
SQUEEZE_HEAD: ModelSpecDict = {"arch": "squeezenet-lenet5", "kwargs": {"head": "squeeze"}}
FAMILIES: dict[str, tuple[ModelSpecDict, ModelSpecDict]] = {  # original, Fire-module student
    "lenet": ({"arch": "lenet5"}, {"arch": "squeezenet-lenet5"}),
    "lenet-squeeze-head": ({"arch": "lenet5"}, SQUEEZE_HEAD),
    "vgg": ({"arch": "vgg-small"}, {"arch": "squeezenet-vgg"}),
    "torchvision": ({"arch": "vgg-small"}, {"arch": "squeezenet1_1-mnist"}),
}
SEED_002 = {  # family: (original size, accuracy %), (squeezed size, accuracy %) on MNIST
    "lenet": (("269 KB", 99.07), ("72 KB", 98.42)),
    "lenet-squeeze-head": (("269 KB", 99.07), ("72 KB", 98.42)),
    "vgg": (("79 MB", 97.85), ("2.9 MB", 99.6)),
    "torchvision": (("79 MB", 97.85), ("2.9 MB", 99.6)),
}
SEED_004 = {"teacher": (9_416_010, 85.5), "student": (1_575_690, 79.7), "student + KD": (1_575_690, 81.4)}


@dataclass
class Run:
    label: str
    params: int
    layers: int
    size_bytes: int
    val_error: float
    epoch: int
    test_error: float
    test_samples: int
    seconds: float
    setting: str = ""


def _layers(model: nn.Module) -> int:
    """Leaf modules holding parameters (convolutions, linears, batch norms)."""
    return sum(1 for m in model.modules() if not list(m.children()) and any(True for _ in m.parameters()))


def _label(spec: ModelSpecDict) -> str:
    kwargs = spec.get("kwargs")
    return f"{spec['arch']}{'' if not kwargs else ' ' + json.dumps(kwargs)}"


def _train_best(
    arch: ModelSpecDict,
    splits: DataSplits,
    config: RetrainConfig,
    teacher: nn.Module | None,
    kd: tuple[float, float],
) -> tuple[nn.Module, float, int, float]:
    """Train `arch` (seeded), keeping the weights of the epoch with the lowest validation error."""
    torch.manual_seed(config.seed)
    model = build_model(arch)
    best: dict[str, object] = {"error": 2.0}
    started = time.perf_counter()

    def keep_best(stats: EpochStats) -> None:
        assert stats.validation_error is not None  # eval_set is the validation split
        if stats.validation_error < best["error"]:  # type: ignore[operator]
            best.update(
                error=stats.validation_error, epoch=stats.epoch, state=copy.deepcopy(model.state_dict())
            )

    assert splits.validation is not None
    if teacher is None:
        train_epochs(model, splits.train, config, eval_set=splits.validation, on_epoch=keep_best)
    else:
        spec = DistillSpec(teacher={"arch": "mlp"}, temperature=kd[0], alpha=kd[1], **config.model_dump())
        distill(model, teacher, splits.train, spec, eval_set=splits.validation, on_epoch=keep_best)
    model.load_state_dict(best["state"])  # type: ignore[arg-type]
    return model, float(best["error"]), int(best["epoch"]), time.perf_counter() - started  # type: ignore[arg-type]


def _run(
    label: str, model: nn.Module, val_error: float, epoch: int, seconds: float, splits: DataSplits
) -> Run:
    assert splits.test is not None
    ev = evaluate(model, splits.test, timing=False)
    params = sum(p.numel() for p in model.parameters())
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return Run(label, params, _layers(model), size, val_error, epoch, ev.error, ev.samples, seconds)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


_TEACHERS: dict[tuple[str, int, str], tuple[nn.Module, float, int, float]] = {}


def family_runs(family: str, splits: DataSplits, args: argparse.Namespace) -> list[Run]:
    original, student = FAMILIES[family]
    config = RetrainConfig(
        epochs=args.epochs, optimizer="adam", lr=args.lr, batch_size=args.batch_size, gamma=1.0, seed=0
    )
    key = (splits.name, len(splits.train), _label(original))
    if key not in _TEACHERS:  # families sharing an original train it once (same seed, same schedule)
        _TEACHERS[key] = _train_best(original, splits, config, None, (0, 0))
    teacher, err, ep, secs = _TEACHERS[key]
    runs = [_run(f"{_label(original)} (original, teacher)", teacher, err, ep, secs, splits)]
    print(f"  {runs[0].label}: validation error {100 * err:.2f}% (epoch {ep}), {secs:.0f} s")
    alone, err, ep, secs = _train_best(student, splits, config, None, (0, 0))
    runs.append(_run(f"{_label(student)} alone", alone, err, ep, secs, splits))
    print(f"  {runs[1].label}: validation error {100 * err:.2f}% (epoch {ep}), {secs:.0f} s")
    teacher.eval()
    candidates = []
    for temperature, alpha in args.grid:
        model, err, ep, secs = _train_best(student, splits, config, teacher, (temperature, alpha))
        run = _run(f"{_label(student)} + KD", model, err, ep, secs, splits)
        run.setting = f"T={temperature:g}, alpha={alpha:g}"
        candidates.append(run)
        print(f"  KD {run.setting}: validation error {100 * err:.2f}% (epoch {ep}), {secs:.0f} s")
    runs.append(min(candidates, key=lambda r: r.val_error))  # chosen on validation only
    runs[-1].setting += f" (chosen on validation of {len(candidates)})"
    runs[-1].seconds = sum(c.seconds for c in candidates)
    return runs


def print_tables(family: str, splits: DataSplits, runs: list[Run], schedule: str) -> None:
    n = runs[0].test_samples
    print(f"\n== seed 002 columns, {family} on {describe(splits)}; {schedule} ==")
    print(
        f"{'Type':52}{'Model Size':>12}{'Accuracy (test)':>22}{'epoch':>7}{'seconds':>9}"
        f"{'seed 002 (MNIST)':>22}"
    )
    seed = SEED_002[family]
    seeds = [f"{seed[0][0]} / {seed[0][1]}%", f"{seed[1][0]} / {seed[1][1]}%", "-"]
    for run, seed_cell in zip(runs, seeds, strict=True):
        right = n - round(run.test_error * n)
        acc = f"{100 * (1 - run.test_error):.2f}% ({right}/{n})"
        print(
            f"{run.label:52}{_size(run.size_bytes):>12}{acc:>22}{run.epoch:>7}{run.seconds:>9.0f}{seed_cell:>22}"
        )
    print(f"  KD setting: {runs[2].setting}")
    print(f"\n== seed 004 columns (KD table), {family} on {splits.name} ==")
    print(
        f"{'':24}{'teacher':>16}{'student':>16}{'student + KD':>16}   seed 004 (CIFAR-10: VGG-13 / MiniVGG)"
    )
    print(
        f"{'Number of layers':24}"
        + "".join(f"{r.layers:>16}" for r in runs)
        + "   36 / 21 / 21 (all modules)"
    )
    print(
        f"{'Number of parameters':24}"
        + "".join(f"{r.params:>16,}" for r in runs)
        + "   "
        + " / ".join(f"{v[0]:,}" for v in SEED_004.values())
    )
    print(
        f"{'Accuracy (test)':24}"
        + "".join(f"{100 * (1 - r.test_error):>15.2f}%" for r in runs)
        + "   "
        + " / ".join(f"{v[1]}%" for v in SEED_004.values())
    )
    uplift = 100 * (runs[1].test_error - runs[2].test_error)
    print(
        f"{'KD uplift':24}{'':>32}{uplift:>+15.2f} pts   +1.7 pts  "
        f"({n} test samples: 1 sample = {100 / n:.2f} pts)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["mnist-5k", "fashion-mnist"])
    parser.add_argument(
        "--families",
        nargs="+",
        default=["lenet", "lenet-squeeze-head", "vgg", "torchvision"],
        choices=sorted(FAMILIES),
    )
    parser.add_argument("--epochs", type=int, default=3, help="one schedule for all runs (seed 002: 20)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-limit", type=int, default=2000, help="first N training samples (0: all)")
    parser.add_argument(
        "--grid",
        nargs="+",
        default=["4:0.9", "2:0.5"],
        help="KD settings T:alpha, chosen among on validation",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcs-reproduce")
    args = parser.parse_args()
    args.grid = [tuple(float(v) for v in g.split(":")) for g in args.grid]
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    for name in args.data:
        splits, _ = bench_data(name, args.train_limit or None, args.cache)
        schedule = (
            f"{args.epochs} epochs, Adam lr {args.lr:g}, batch {args.batch_size}, best validation epoch kept"
        )
        for family in args.families:
            started = time.perf_counter()
            runs = family_runs(family, splits, args)
            print_tables(family, splits, runs, schedule)
            print(f"  wall time {time.perf_counter() - started:.0f} s (shared, loaded 2-core CPU, 1 thread)")
    print(f"\ntotal wall time {time.perf_counter() - total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
