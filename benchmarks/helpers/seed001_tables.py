"""Seed 001's Tables 1-7 and Figures 2-3 as data: per row, the rules for conv1, conv2, fc1 and fc2 and the
seed's figures (train error %, test error %, compressed parameters, compression ratio) where it printed them.

Low-rank steps use the seed's α with `normalize` (the LC toolkit's LeNet-5 setup; see
benchmarks/lc_toolkit_side_by_side.py). The figures' single-type sweeps (Figure 2: pruning and low-rank of
every layer; Figure 3: quantization of every layer with k = 2..64) have no printed numbers: "-" there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ROWS", "TABLES", "Row", "rules_of"]

LAYERS = ("conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight")
SIZES = {"conv1.weight": 500, "conv2.weight": 25_000, "fc1.weight": 400_000, "fc2.weight": 5_000}

Step = tuple[str, float]  # ("P", kappa) | ("Q", k) | ("L", alpha)


@dataclass(frozen=True)
class Row:
    table: str
    steps: tuple[Step, Step, Step, Step]  # conv1, conv2, fc1, fc2
    seed: tuple[float, float, int, float] | None  # train error %, test error %, compressed params, ratio

    @property
    def label(self) -> str:
        def one(step: Step) -> str:
            kind, value = step
            return {"P": f"P{value:g}", "Q": f"Q{value:g}", "L": f"L{value:.3g}"}[kind]

        return " ".join(one(s) for s in self.steps)


TABLES = {
    "1": "pruned convs + quantized linears",
    "2": "quantized convs + low-rank linears",
    "3": "low-rank convs + quantized linears",
    "4": "quantized convs + pruned linears",
    "5": "low-rank convs + pruned linears",
    "6": "pruned convs + low-rank linears",
    "7": "pruned convs + quantized / low-rank linears",
    "fig2-prune": "Figure 2: pruning of every layer",
    "fig2-lowrank": "Figure 2: low-rank of every layer",
    "fig3-quantize": "Figure 3: quantization of every layer",
}


def _row(table: str, c1: Step, c2: Step, f1: Step, f2: Step, seed: Any = None) -> Row:
    return Row(table, (c1, c2, f1, f2), seed)


Q2: Step = ("Q", 2)
ROWS: list[Row] = [
    *(
        _row("1", ("P", 104), ("P", k2), Q2, Q2, s)
        for k2, s in (
            (12525, (0.01, 0.53, 415289, 15.89)),
            (5010, (0.00, 0.55, 407618, 22.64)),
            (2505, (0.03, 0.51, 405113, 26.43)),
            (1250, (0.06, 0.57, 403858, 28.96)),
        )
    ),
    _row("2", Q2, Q2, ("L", 1e-9), ("L", 1e-9), (0.01, 0.63, 54029, 14.33)),
    _row("2", Q2, Q2, ("L", 2.625e-9), ("L", 2.625e-9), (0.1, 0.67, 33229, 47.09)),
    *(
        _row("3", ("L", a), ("L", a), Q2, Q2, s)
        for a, s in (
            (1e-9, (0.00, 0.55, 434179, 9.56)),
            (2.5e-9, (0.00, 0.65, 422279, 13.01)),
            (5e-9, (0.00, 0.59, 410379, 20.38)),
            (1e-8, (0.00, 0.67, 407229, 23.97)),
            (2.5e-8, (0.01, 0.74, 406179, 25.46)),
            (5e-8, (78.45, 78.98, 404114, 29.02)),
        )
    ),
    *(
        _row("4", Q2, Q2, ("P", k3), ("P", k4), s)
        for k3, k4, s in (
            (100000, 1000, (0.11, 0.84, 126504, 3.77)),
            (80000, 500, (0.14, 0.82, 106004, 4.66)),
            (40000, 250, (0.10, 0.84, 65754, 8.88)),
            (20000, 125, (0.06, 0.78, 45629, 16.64)),
        )
    ),
    *(
        _row("5", ("L", a), ("L", a), ("P", k3), ("P", k4), s)
        for a, k3, k4, s in (
            (1e-9, 80000, 500, (0.00, 0.63, 111125, 3.52)),
            (2.625e-9, 40000, 250, (0.00, 0.57, 56875, 6.69)),
            (2.625e-9, 15000, 250, (80.15, 80.41, 17875, 19.25)),
        )
    ),
    *(
        _row("6", ("P", 104), ("P", k2), ("L", a), ("L", a), s)
        for k2, a, s in (
            (5010, 1e-9, (0.00, 0.57, 41439, 10.04)),
            (5010, 2.5e-9, (0.00, 0.61, 12839, 30.45)),
            (2505, 2.5e-9, (0.00, 0.53, 10334, 37.73)),
            (2505, 2.75e-9, (0.00, 0.57, 10334, 37.73)),
        )
    ),
    *(
        _row("7", ("P", 104), ("P", 2505), f1, f2, s)
        for f1, f2, s in (
            (Q2, ("L", 1e-9), (0.06, 0.74, 405136, 22.97)),
            (Q2, ("L", 2.5e-9), (0.09, 0.67, 405136, 22.97)),
            (("L", 2e-9), Q2, (0.19, 1.17, 10311, 48.09)),
            (("L", 2.5e-9), Q2, (0.04, 0.80, 10311, 48.09)),
            (("L", 3e-9), Q2, (0.09, 0.80, 10311, 48.09)),
        )
    ),
    *(  # κ from about 1/35 to 1/5 of each layer, as the seed describes
        _row("fig2-prune", *(("P", max(1, round(SIZES[n] / d))) for n in LAYERS))  # type: ignore[arg-type]
        for d in (35, 20, 10, 5)
    ),
    *(_row("fig2-lowrank", *(("L", a),) * 4) for a in (1e-9, 5e-9, 1e-8, 5e-8)),  # type: ignore[arg-type]
    *(_row("fig3-quantize", *(("Q", k),) * 4) for k in (2, 4, 8, 16, 32, 64)),  # type: ignore[arg-type]
]


def rules_of(row: Row) -> list[dict[str, Any]]:
    """The spec rules of a row: one rule per layer."""
    rules = []
    for name, (kind, value) in zip(LAYERS, row.steps, strict=True):
        if kind == "P":
            step: dict[str, Any] = {"type": "prune", "keep": int(value)}
        elif kind == "Q":
            step = {"type": "quantize", "k": int(value), "init": "kmeans++"}
        else:
            step = {"type": "lowrank", "alpha": value, "normalize": True}
        rules.append({"name": f"{name}: {kind}{value:g}", "select": {"name": name}, "steps": [step]})
    return rules
