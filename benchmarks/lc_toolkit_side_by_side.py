"""The LC toolkit's own LC algorithm beside ours on seed 001's LeNet-5 mixes: same reference, data, schedule.

Seed 001 (full MNIST, the LC toolkit) reports pruned convs (κ 104 / 2505) + low-rank linears (α 2.5e-9)
at 37.7x / 0.53%, the three-type mix (low-rank fc1, k = 2 fc2) at 48.1x / 0.80% and pruned convs + k = 2
linears at 26.4x / 0.51%. This script runs, for each mix and each L-step learning rate given, the toolkit's
`lc.Algorithm` (UCMerced-ML/LC-model-compression: its direct compression at μ = 0, its C steps
`ConstraintL0Pruning` / `RankSelection(normalize=True)` / `AdaptiveQuantization`, its multiplier update and
penalty, with the L step its examples write) and ours (`compression_core.methods.lc.run_lc`) on:

- the reference `mcs train lenet5 --data DATA` makes (its defaults: 20 epochs, batch 16, SGD 0.005, seed 0),
- the built-in's training split for the L steps, its validation split for the error of Δ(Θ) after every
  μ step, its test split for the final error only,
- one schedule: μ_k = 5e-5 · 1.15^k (the shipped examples' μ0), `--epochs` L-step epochs at batch 256
  with lr · 0.98^k, Nesterov momentum 0.9. `--full` is seed 001's 30 steps x 10 epochs; without it a
  reduced schedule (`--steps`, `--epochs`, μ growth and lr decay stretched to cover the same μ / lr range)
  is a smoke run of a few minutes.

It prints, per mix and lr, the fc1/fc2 ranks (or codebook sizes) after each μ step, ||w - Δ(Θ)|| / ||w||
and the validation error, toolkit | ours; then the final LC ratio (the toolkit's own `count_param_bits` for
its run, `compression_core.metrics.lc_counts` for ours: 32-bit weights over the compressed bits) and test
error with its sample count. `--c-step` instead compares the rank-selection C step alone on the reference's
fc1/fc2 (the toolkit's `RankSelection.compress` beside our `select_rank`, `normalize` off and on).

The toolkit is never vendored: give a checkout at run time.

    git clone https://github.com/UCMerced-ML/LC-model-compression /tmp/lc-toolkit   (any checkout)
    PYTHONPATH=. python benchmarks/lc_toolkit_side_by_side.py --lc-toolkit /tmp/lc-toolkit   (smoke, minutes)
    PYTHONPATH=. python benchmarks/lc_toolkit_side_by_side.py --lc-toolkit ... --full [--mixes a three b]
        [--lrs 0.2 0.02] [--impl toolkit ours] [--json out.json]     (per mix, lr and side: ~10-30 CPU-min)
    PYTHONPATH=. python benchmarks/lc_toolkit_side_by_side.py --table out1.json out2.json ...
        (the side-by-side table of runs made apart, e.g. in parallel processes)

MCS_LC_TOOLKIT may hold the checkout's path instead of --lc-toolkit.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.bench_data import bench_data, cached_reference, describe  # noqa: E402
from helpers.lc_side_by_side import (  # noqa: E402
    MIXES,
    Outcome,
    Schedule,
    StepRecord,
    run_ours,
    run_toolkit,
)

from compression_core.evaluate import evaluate  # noqa: E402
from compression_core.io import load_state_dict  # noqa: E402
from compression_core.methods.lowrank.apply import select_rank  # noqa: E402
from compression_core.methods.lowrank.spec import LowRankStep  # noqa: E402
from compression_core.models import build_model, load_into  # noqa: E402

SEED_ALPHA = 2.5e-9
SEED = Schedule()  # seed 001: μ 5e-5 · 1.15^k, 30 steps x 10 epochs, lr 0.2 · 0.98^k
MCS_TRAIN_EPOCHS = 20  # `mcs train`'s default


def reduced(steps: int, epochs: int, lr: float, batch_size: int) -> Schedule:
    """`steps` μ steps over the seed's μ and lr range (growth and decay stretched), `epochs` each."""
    span = (SEED.steps - 1) / max(steps - 1, 1)
    return Schedule(
        mu0=SEED.mu0,
        growth=SEED.growth**span,
        steps=steps,
        epochs=epochs,
        lr=lr,
        gamma=SEED.gamma**span,
        batch_size=batch_size,
    )


# ----------------------------------------------------------------------------------- the C step alone


def toolkit_rank(toolkit: Path, weight: np.ndarray, alpha: float, mu: float, normalize: bool) -> int:
    sys.path.insert(0, str(toolkit))
    from lc.compression_types.low_rank import RankSelection  # the toolkit's own C step

    c = RankSelection(
        conv_scheme="scheme_1", alpha=alpha, criterion="storage", normalize=normalize, module=None
    )
    c.mu, c.step_number = mu, 0
    with contextlib.redirect_stdout(io.StringIO()):  # it prints one line per call
        c.compress(weight.astype(np.float64))
    return int(c.selected_rank)


def our_rank(weight: torch.Tensor, alpha: float, mu: float, normalize: bool) -> int:
    s = torch.linalg.svdvals(weight.double())
    step = LowRankStep(alpha=alpha, mu=mu, normalize=normalize)
    return select_rank(s, weight.shape[0], weight.shape[1], step)


def c_step_table(toolkit: Path, state: dict[str, torch.Tensor], alpha: float, data: str) -> bool:
    mus = [SEED.mu0 * SEED.growth**k for k in (0, 10, 20, SEED.steps - 1)]
    print(f"\nrank selected at α = {alpha:g} (storage criterion), toolkit | ours, on {data}'s reference")
    print(f"{'layer':10}{'||W||²':>9}{'mu':>10}{'normalize=False':>20}{'normalize=True':>20}")
    agree = True
    for name in ("fc1.weight", "fc2.weight"):
        w = state[name].float()
        energy = float((w.double() ** 2).sum())
        for mu in mus:
            cells = []
            for normalize in (False, True):
                theirs = toolkit_rank(toolkit, w.numpy(), alpha, mu, normalize)
                ours = our_rank(w, alpha, mu, normalize)
                agree &= theirs == ours
                cells.append(f"{theirs:>4} | {ours:<4}")
            print(f"{name:10}{energy:>9.1f}{mu:>10.2e}{cells[0]:>20}{cells[1]:>20}")
        rescaled = alpha * energy
        r = [our_rank(w, rescaled, mu, False) for mu in mus]
        print(f"{'':10}  α·||W||² = {rescaled:.3g} without normalize selects ranks {r} at those mu")
    print(f"\ntoolkit and ours agree on every cell: {agree}")
    return agree


# ------------------------------------------------------------------------------------- the whole algorithm


def _pct(error: float, n: int) -> str:
    if not math.isfinite(error) or n == 0:
        return "-"
    return f"{100 * error:.2f}% ({round(error * n)}/{n})"


def _linears(rec: StepRecord | None) -> str:
    if rec is None:
        return "-"
    return f"{rec.structure.get('fc1.weight', '-')}/{rec.structure.get('fc2.weight', '-')}"


def print_pair(mix: str, lr: float, toolkit: Outcome | None, ours: Outcome | None) -> None:
    title = MIXES[mix][0]
    first = toolkit or ours
    assert first is not None
    sched = first.schedule
    print(f"\n== mix ({mix}): {title}; L-step lr {lr:g} ==")
    if toolkit and ours and toolkit.reference != ours.reference:
        print(f"NOT the same reference: toolkit {toolkit.reference} | ours {ours.reference}")
    print(
        f"schedule: {sched.get('steps')} μ steps x {sched.get('epochs')} L-step epochs, batch "
        f"{sched.get('batch_size')}, μ {sched.get('mu0'):.2g} x {sched.get('growth'):.4g}/step, "
        f"lr x {sched.get('gamma'):.4g}/step"
    )
    print(
        f"{'step':>4}{'mu':>10}{'fc1/fc2 toolkit':>17}{'ours':>10}"
        f"{'||w-Δ||/||w|| toolkit':>23}{'ours':>8}{'val err toolkit':>17}{'ours':>8}"
    )
    steps = max(len(toolkit.steps) if toolkit else 0, len(ours.steps) if ours else 0)
    for k in range(steps):
        t = toolkit.steps[k] if toolkit and k < len(toolkit.steps) else None
        o = ours.steps[k] if ours and k < len(ours.steps) else None
        shown = o or t
        mu = shown.mu if shown is not None else 0.0
        mu_cell = "direct" if k == 0 else f"{mu:.2e}"  # the toolkit compresses at μ = 0, ours at μ0
        print(
            f"{k:>4}{mu_cell:>10}{_linears(t):>17}{_linears(o):>10}"
            f"{'-' if t is None else format(t.gap, '.4f'):>23}{'-' if o is None else format(o.gap, '.4f'):>8}"
            f"{'-' if t is None else format(100 * t.val_error, '.2f'):>17}"
            f"{'-' if o is None else format(100 * o.val_error, '.2f'):>8}"
        )
    for outcome in (toolkit, ours):
        if outcome is not None:
            print(summary_line(outcome))


def summary_line(o: Outcome) -> str:
    lr = o.schedule["lr"]
    head = f"  {o.impl:8}({o.mix}) lr {lr:g}:"
    if o.failed:
        return f"{head} failed after {len(o.steps) - 1} steps ({o.failed}); {o.seconds:.0f} s"
    val = o.steps[-1].val_error if o.steps else math.nan
    return (
        f"{head} LC ratio {o.ratio:.1f}x ({o.lc_params:,} params), test error "
        f"{_pct(o.test_error, o.test_samples)}, final validation {_pct(val, o.val_samples)}, "
        f"fc1/fc2 {_linears(o.steps[-1] if o.steps else None)}; {o.seconds:.0f} s; "
        f"reference {o.reference or 'not recorded'}"
    )


def print_table(outcomes: list[Outcome]) -> None:
    keys = list(dict.fromkeys((o.mix, o.schedule["lr"]) for o in outcomes))
    for mix, lr in keys:
        pick = {o.impl: o for o in outcomes if o.mix == mix and o.schedule["lr"] == lr}
        print_pair(mix, lr, pick.get("toolkit"), pick.get("ours"))
    print("\nsummary (toolkit | ours):")
    for o in outcomes:
        print(summary_line(o))


def spectrum_line(state: dict[str, torch.Tensor], alpha: float = SEED_ALPHA) -> None:
    """How concentrated fc1/fc2 are: rank selection (normalized) leaves rank 0 only once
    μ > 2α(m + n) / (s1² / ||W||²), so a flat spectrum keeps a layer at rank 0 for most of the schedule."""
    for name in ("fc1.weight", "fc2.weight"):
        w = state[name].double()
        s2 = torch.linalg.svdvals(w) ** 2
        share = float(s2[0] / s2.sum())
        mu_star = 2 * alpha * sum(w.shape) / share
        k = math.log(mu_star / SEED.mu0) / math.log(SEED.growth)
        print(
            f"reference {name}: s1²/||W||² = {share:.4f}; at α {alpha:g} rank 0 while μ < {mu_star:.2e} "
            f"(the seed schedule's step {max(0.0, k):.1f} of {SEED.steps})"
        )


def run_algorithms(args: argparse.Namespace, toolkit: Path | None) -> int:
    splits, _ = bench_data(args.data, args.train_limit or None, args.cache)
    print(f"data: {describe(splits)}")
    assert splits.validation is not None and splits.test is not None
    ref_path = cached_reference("lenet5", splits, args.reference_epochs, args.cache)
    reference = load_state_dict(ref_path)
    ref_model = load_into(build_model({"arch": "lenet5"}), reference)
    rv = evaluate(ref_model, splits.validation, timing=False)
    rt = evaluate(ref_model, splits.test, timing=False)
    print(
        f"reference (mcs train lenet5 --data {args.data} --epochs {args.reference_epochs}): validation "
        f"{_pct(rv.error, rv.samples)}, test {_pct(rt.error, rt.samples)}"
    )
    digest = hashlib.sha256(ref_path.read_bytes()).hexdigest()[:16]
    reference_id = f"sha256 {digest}..., test {_pct(rt.error, rt.samples)}"
    print(f"reference file: {reference_id}")
    spectrum_line(reference)
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    for mix in args.mixes:
        for lr in args.lrs:
            if args.full:
                schedule = Schedule(lr=lr, batch_size=args.batch_size)
            else:
                schedule = reduced(args.steps, args.epochs, lr, args.batch_size)
            for impl in args.impl:
                label = f"{impl} ({mix}) lr {lr:g}"

                def progress(rec: StepRecord, label: str = label) -> None:
                    print(
                        f"  {label}: step {rec.step:>2} mu {rec.mu:.2e} fc1/fc2 {_linears(rec)} "
                        f"gap {rec.gap:.4f} val {100 * rec.val_error:.2f}% ({rec.seconds:.0f} s)",
                        flush=True,
                    )

                if impl == "toolkit":
                    assert toolkit is not None
                    log = args.cache / f"toolkit-{args.data}-{mix}-lr{lr:g}-{os.getpid()}.log"
                    o = run_toolkit(
                        toolkit,
                        mix,
                        reference,
                        splits.train,
                        splits.validation,
                        splits.test,
                        schedule,
                        log,
                        progress,
                    )
                else:
                    o = run_ours(
                        mix,
                        reference,
                        splits.train,
                        splits.validation,
                        splits.test,
                        schedule,
                        args.data,
                        progress,
                    )
                o.reference = reference_id
                outcomes.append(o)
                print(summary_line(o), flush=True)
                if args.json:
                    args.json.write_text(json.dumps([x.to_dict() for x in outcomes], indent=1))
    print_table(outcomes)
    print(
        f"\ntotal wall time {time.perf_counter() - started:.0f} s "
        f"(one torch thread; shared 2-core machine, load {os.getloadavg()[0]:.1f} at the end)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lc-toolkit",
        "--toolkit",
        dest="toolkit",
        type=Path,
        default=os.environ.get("MCS_LC_TOOLKIT"),
        help="a checkout of UCMerced-ML/LC-model-compression (default: $MCS_LC_TOOLKIT)",
    )
    parser.add_argument("--data", default="mnist-5k", choices=["mnist-5k", "fashion-mnist"])
    parser.add_argument("--mixes", nargs="+", default=["a", "three", "b"], choices=sorted(MIXES))
    parser.add_argument(
        "--lrs", nargs="+", type=float, default=[0.2, 0.02], help="L-step learning rates (seed: 0.2)"
    )
    parser.add_argument("--impl", nargs="+", default=["toolkit", "ours"], choices=["toolkit", "ours"])
    parser.add_argument("--full", action="store_true", help="seed 001's schedule: 30 μ steps x 10 epochs")
    parser.add_argument("--steps", type=int, default=4, help="without --full: μ steps (smoke)")
    parser.add_argument("--epochs", type=int, default=1, help="without --full: L-step epochs (smoke)")
    parser.add_argument("--batch-size", type=int, default=256, help="L-step batch (the shipped examples')")
    parser.add_argument("--train-limit", type=int, default=0, help="first N training samples (0: all)")
    parser.add_argument("--reference-epochs", type=int, default=MCS_TRAIN_EPOCHS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the outcomes here (after each run)")
    parser.add_argument("--table", nargs="+", type=Path, help="print the table of saved --json files")
    parser.add_argument("--c-step", action="store_true", help="only the rank-selection C step table")
    parser.add_argument("--alpha", type=float, default=SEED_ALPHA, help="with --c-step")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcs-reproduce-lc")
    args = parser.parse_args()
    if isinstance(sys.stdout, io.TextIOWrapper):  # progress lines reach a log file as they come
        sys.stdout.reconfigure(line_buffering=True)
    if args.table:
        outcomes = [Outcome.from_dict(d) for p in args.table for d in json.loads(p.read_text())]
        print_table(outcomes)
        return 0
    toolkit = args.toolkit
    has_toolkit = toolkit is not None and (Path(toolkit) / "lc" / "compression_types").is_dir()
    if not has_toolkit and (args.c_step or "toolkit" in args.impl):
        print(
            "not run: give --lc-toolkit (or MCS_LC_TOOLKIT) pointing at a checkout of "
            "UCMerced-ML/LC-model-compression (git clone https://github.com/UCMerced-ML/LC-model-compression)"
        )
        return 0
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.c_step:
        splits, _ = bench_data(args.data, args.train_limit or None, args.cache)
        state = load_state_dict(cached_reference("lenet5", splits, args.reference_epochs, args.cache))
        return 0 if c_step_table(Path(toolkit), state, args.alpha, args.data) else 1
    return run_algorithms(args, Path(toolkit) if has_toolkit else None)


if __name__ == "__main__":
    raise SystemExit(main())
