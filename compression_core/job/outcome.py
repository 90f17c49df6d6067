"""metrics.json of a data-aware job, assembled in one place from what its methods hand back (`Outcome`).

Every data-aware job's metrics have the same top: version, library, device, totals, timing, per-tensor
entries (measured against `job.original`), evaluation (before, the data set; `after` is added by `finish`),
training, then each method's section under its field (`lc`, `sws`, `distill`, ...).
"""

from __future__ import annotations

from typing import Any

from compression_core import __version__
from compression_core.job.context import JobContext
from compression_core.methods.base import Outcome
from compression_core.metrics import summarize, tensor_metrics

__all__ = ["assemble"]


def assemble(job: JobContext, outcome: Outcome, sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The metrics of `outcome` (whose records cover the whole state dict) plus the methods' `sections`."""
    assert outcome.records is not None
    entries = [
        tensor_metrics(r.name, job.original[r.name], r, outcome.rules.get(r.name)) for r in outcome.records
    ]
    evaluation = job.evaluation  # shared: `finish` adds `after` to the same dict
    data_summary = job.data_summary()
    if data_summary is not None:
        evaluation["data"] = data_summary
    metrics: dict[str, Any] = {
        "version": 1,
        "library": f"compression_core {__version__}",
        "device": job.device,
        "totals": summarize(entries),
        "timing": {"seconds": dict(outcome.seconds)},
        "tensors": entries,
        "evaluation": evaluation,
        "training": outcome.training,
    }
    for field, section in sections.items():
        metrics[field] = section
    return metrics
