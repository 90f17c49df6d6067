"""One LC run on LeNet-5 by the LC toolkit's own `lc.Algorithm` or by ours, recorded step by step alike.

Both runs start from the same reference weights, train on the same training split, pick nothing, report
the validation error of Δ(Θ) after every C step and the test error of the final Δ(Θ) (the one model both
algorithms return), through the same `compression_core.evaluate.evaluate`. The schedule is one
`Schedule` for both: μ_k = mu0 · growth^k, `epochs` L-step epochs of SGD (momentum 0.9, Nesterov, a fresh
optimizer each step with lr · gamma^k, as in the toolkit's examples and our `lstep.py`) at `batch_size`.

The toolkit (UCMerced-ML/LC-model-compression) is imported from a checkout at run time, never vendored.
Its library has no L step: the user writes one (its examples: `examples/lenet300/lenet300.py` `my_l_step`,
`examples/cvpr2020/cifar10_exp_setups/lenets.py`). `toolkit_l_step` below is that function, adapted only
where our setting needs it (CPU, our model has no `.loss`, the epochs of our schedule on every step; the
lenet300 example doubles the first step's epochs, the cvpr2020 runner does not by default). The toolkit's
modules print on every call; their output goes to a log file (`Outcome.log`), ours to the terminal.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compression_core.evaluate import evaluate
from compression_core.methods.lc.algorithm import LCStepStats, run_lc
from compression_core.metrics import lc_counts
from compression_core.models import build_model, load_into
from compression_core.spec import Spec

__all__ = ["MIXES", "Outcome", "Schedule", "StepRecord", "run_ours", "run_toolkit"]

LAYERS = ("conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight")
ALPHA = 2.5e-9  # seed 001's low-rank α (on the toolkit's normalized scale)

# mix name -> (title, per-layer compression: ("P", κ) prune, ("L", α) rank selection, ("Q", k) quantize)
MIXES: dict[str, tuple[str, tuple[tuple[str, float], ...]]] = {
    "a": (
        "pruned convs (104, 2505) + low-rank linears (alpha 2.5e-9); seed 37.7x at 0.53%",
        (("P", 104), ("P", 2505), ("L", ALPHA), ("L", ALPHA)),
    ),
    "three": (
        "pruned convs + low-rank fc1 (alpha 2.5e-9) + k=2 fc2; seed 48.1x at 0.80%",
        (("P", 104), ("P", 2505), ("L", ALPHA), ("Q", 2)),
    ),
    "b": (
        "pruned convs (104, 2505) + k=2 linears; seed 26.4x at 0.51%",
        (("P", 104), ("P", 2505), ("Q", 2), ("Q", 2)),
    ),
}


@dataclass(frozen=True)
class Schedule:
    mu0: float = 5e-5
    growth: float = 1.15
    steps: int = 30
    epochs: int = 10
    lr: float = 0.2
    gamma: float = 0.98
    batch_size: int = 256

    def mus(self) -> list[float]:
        return [self.mu0 * self.growth**k for k in range(self.steps)]


@dataclass
class StepRecord:
    step: int  # 0 = direct compression
    mu: float
    structure: dict[str, str]  # layer -> "r7", "k2", "104"
    gap: float  # ||w - Δ(Θ)|| / ||w|| over the compressed tensors, after the C step
    val_error: float
    seconds: float


@dataclass
class Outcome:
    impl: str  # "toolkit" or "ours"
    mix: str
    schedule: dict[str, Any]
    steps: list[StepRecord] = field(default_factory=list)
    test_error: float = math.nan
    test_samples: int = 0
    val_samples: int = 0
    lc_params: int = 0
    lc_bits: int = 0
    original: int = 0
    seconds: float = 0.0
    failed: str | None = None
    log: str | None = None
    reference: str | None = None  # sha256 prefix and test error of the reference it started from

    @property
    def ratio(self) -> float:
        return 32 * self.original / self.lc_bits if self.lc_bits else math.nan

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Outcome:
        d = {k: v for k, v in d.items() if k != "ratio"}
        d["steps"] = [StepRecord(**s) for s in d["steps"]]
        return Outcome(**d)


def _error(model: nn.Module, data: TensorDataset) -> tuple[float, int]:
    ev = evaluate(model, data, timing=False)
    return ev.error, ev.samples


def _fresh_model(reference: dict[str, torch.Tensor]) -> nn.Module:
    return load_into(build_model({"arch": "lenet5"}), reference)


# --------------------------------------------------------------------------------------------------- ours


def our_spec(mix: str, schedule: Schedule, data: str) -> Spec:
    """The mix as a spec of ours: the shipped examples' rules, the schedule given."""
    rules = []
    for layer, (kind, value) in zip(LAYERS, MIXES[mix][1], strict=True):
        step: dict[str, Any]
        if kind == "P":
            step = {"type": "prune", "keep": int(value)}
        elif kind == "L":
            step = {"type": "lowrank", "alpha": value, "normalize": True}
        else:
            step = {"type": "quantize", "k": int(value), "init": "kmeans++"}
        rules.append({"select": {"name": layer}, "steps": [step]})
    l_step = {
        "epochs": schedule.epochs,
        "lr": schedule.lr,
        "gamma": schedule.gamma,
        "momentum": 0.9,
        "nesterov": True,
        "batch_size": schedule.batch_size,
    }
    lc = {"mu0": schedule.mu0, "mu_growth": schedule.growth, "steps": schedule.steps, "l_step": l_step}
    return Spec.model_validate(
        {
            "version": 1,
            "rules": rules,
            "default": {"dtype": "keep"},
            "model": {"arch": "lenet5"},
            "data": {"builtin": data},
            "lc": {**lc, "multipliers": True, "eval_every": 1},
        }
    )


def _structure(stats: LCStepStats) -> dict[str, str]:
    out = {}
    for name, s in stats.structure.items():
        if "rank" in s:
            out[name] = f"r{s['rank']}"
        elif "codebook" in s:
            out[name] = f"k{s['codebook']}"
        else:
            out[name] = str(s.get("kept", "-"))
    return out


def run_ours(
    mix: str,
    reference: dict[str, torch.Tensor],
    train: TensorDataset,
    validation: TensorDataset,
    test: TensorDataset,
    schedule: Schedule,
    data: str,
    progress: Callable[[StepRecord], None],
) -> Outcome:
    """`run_lc` (compression_core.methods.lc) on the mix; validation error of Δ(Θ) every step."""
    outcome = Outcome("ours", mix, asdict(schedule))
    model = _fresh_model(reference)
    spec = our_spec(mix, schedule, data)
    started = time.perf_counter()

    def on_step(stats: LCStepStats) -> None:
        assert stats.validation_error is not None and stats.validation_samples is not None
        outcome.val_samples = stats.validation_samples
        rec = StepRecord(
            stats.step,
            stats.mu,
            _structure(stats),
            stats.constraint_gap,
            stats.validation_error,
            stats.seconds,
        )
        outcome.steps.append(rec)
        progress(rec)

    try:
        result = run_lc(model, spec, train, eval_set=validation, on_step=on_step)
    except Exception as exc:  # a diverged run is a row of the table, not the end of the benchmark
        outcome.failed = f"{type(exc).__name__}: {str(exc).split(';')[0]}"
        outcome.seconds = time.perf_counter() - started
        return outcome
    outcome.test_error, outcome.test_samples = _error(model, test)
    for name, record in result.records.items():
        counts = lc_counts(name, reference[name], record)
        outcome.lc_params += counts["params"]
        outcome.lc_bits += counts["bits"]
        outcome.original += counts["original_params"]
    outcome.seconds = time.perf_counter() - started
    return outcome


# ------------------------------------------------------------------------------------------------ toolkit


@contextlib.contextmanager
def _toolkit_on_path(toolkit: Path) -> Iterator[Any]:
    sys.path.insert(0, str(toolkit))
    try:
        import lc  # the toolkit's package (UCMerced-ML/LC-model-compression)

        yield lc
    finally:
        sys.path.remove(str(toolkit))


def toolkit_l_step(
    train: TensorDataset, schedule: Schedule, device: torch.device
) -> Callable[[nn.Module, Callable[[], torch.Tensor], int], None]:
    """The L step as the toolkit's examples write it (lenet300.py `my_l_step`): a fresh SGD with Nesterov
    momentum 0.9 at lr_base · 0.98^step, shuffled mini-batches, cross-entropy + the toolkit's lc_penalty()."""
    loader = DataLoader(train, batch_size=schedule.batch_size, shuffle=True)
    loss_fn = nn.CrossEntropyLoss()

    def my_l_step(model: nn.Module, lc_penalty: Callable[[], torch.Tensor], step: int) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        lr = schedule.lr * (schedule.gamma**step)
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
        model.train()
        for _epoch in range(schedule.epochs):
            for x, target in loader:
                optimizer.zero_grad()
                x, target = x.to(device), target.to(dtype=torch.long, device=device)
                loss = loss_fn(model(x), target) + lc_penalty()
                loss.backward()
                optimizer.step()

    return my_l_step


def _toolkit_tasks(lc: Any, model: nn.Module, mix: str, device: torch.device) -> dict[Any, Any]:
    from lc.compression_types import AdaptiveQuantization, ConstraintL0Pruning, RankSelection
    from lc.torch import AsIs, AsVector
    from lc.torch import ParameterTorch as Param

    modules = {"conv1.weight": model.conv1, "conv2.weight": model.conv2}
    modules |= {"fc1.weight": model.fc1, "fc2.weight": model.fc2}
    tasks: dict[Any, Any] = {}
    for layer, (kind, value) in zip(LAYERS, MIXES[mix][1], strict=True):
        module = modules[layer]
        getter = lambda m=module: m.weight  # noqa: E731 (the toolkit takes getters)
        if kind == "P":
            tasks[Param(getter, device)] = (AsVector, ConstraintL0Pruning(kappa=int(value)), layer)
        elif kind == "L":
            rs = RankSelection(
                conv_scheme="scheme_1", alpha=value, criterion="storage", normalize=True, module=module
            )
            tasks[Param(getter, device)] = (AsIs, rs, layer)
        else:
            tasks[Param(getter, device)] = (AsVector, AdaptiveQuantization(k=int(value)), layer)
    return tasks


def _toolkit_structure(alg: Any) -> dict[str, str]:
    out = {}
    for _param, (_view, compression, name) in alg.compression_tasks.items():
        if hasattr(compression, "selected_rank"):
            out[name] = f"r{compression.selected_rank}"
        elif hasattr(compression, "k_"):
            out[name] = f"k{compression.k_}"
        else:
            out[name] = str(compression.kappa)
    return out


def _toolkit_gap(alg: Any) -> float:
    num = sum(float(np.sum((p.w - p.delta_theta) ** 2)) for p in alg.lc_parameters)
    den = sum(float(np.sum(p.w**2)) for p in alg.lc_parameters)
    return math.sqrt(num / den) if den > 0 else 0.0


def run_toolkit(
    toolkit: Path,
    mix: str,
    reference: dict[str, torch.Tensor],
    train: TensorDataset,
    validation: TensorDataset,
    test: TensorDataset,
    schedule: Schedule,
    log_path: Path,
    progress: Callable[[StepRecord], None],
    seed: int = 0,
) -> Outcome:
    """The toolkit's `lc.Algorithm(...).run()` on the mix: its direct compression (μ = 0), C steps,
    multiplier updates and penalty; our `evaluate` is its evaluation_func (on the validation split)."""
    outcome = Outcome("toolkit", mix, asdict(schedule), log=str(log_path))
    device = torch.device("cpu")
    torch.manual_seed(seed)  # the DataLoader's shuffle
    model = _fresh_model(reference)
    mus = schedule.mus()
    started = time.perf_counter()
    holder: dict[str, Any] = {}
    last = [started]
    terminal = sys.stdout  # the toolkit's prints go to the log; our progress lines to the terminal

    def evaluation_func(m: nn.Module) -> None:  # called with w = Δ(Θ) after direct compression and each step
        alg = holder["alg"]
        err, n = _error(m, validation)
        outcome.val_samples = n
        k = len(outcome.steps)
        now = time.perf_counter()
        mu = 0.0 if k == 0 else mus[k - 1]
        rec = StepRecord(k, mu, _toolkit_structure(alg), _toolkit_gap(alg), err, now - last[0])
        last[0] = now
        outcome.steps.append(rec)
        with contextlib.redirect_stdout(terminal):
            progress(rec)

    with _toolkit_on_path(toolkit) as lc, log_path.open("w") as log, contextlib.redirect_stdout(log):
        try:
            tasks = _toolkit_tasks(lc, model, mix, device)
            alg = lc.Algorithm(
                model=model,
                compression_tasks=tasks,
                mu_schedule=mus,
                l_step_optimization=toolkit_l_step(train, schedule, device),
                evaluation_func=evaluation_func,
            )
            holder["alg"] = alg
            alg.run()
            bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                raise FloatingPointError(f"training diverged: {bad} not finite")
            alg.compression_eval()  # w = Δ(Θ): the compressed model
            outcome.lc_params = int(alg.count_params())
            outcome.lc_bits = int(alg.count_param_bits())
        except Exception as exc:  # a diverged run (NaN in the SVD / k-means) is a row, not the end
            outcome.failed = f"{type(exc).__name__}: {str(exc)[:120]}"
            outcome.seconds = time.perf_counter() - started
            return outcome
    outcome.original = sum(int(reference[n].numel()) for n in LAYERS)
    outcome.test_error, outcome.test_samples = _error(model, test)
    outcome.seconds = time.perf_counter() - started
    return outcome
