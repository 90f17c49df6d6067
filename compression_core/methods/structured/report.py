"""After a data-aware job: what the physically smaller model of the zeroed channels would be (metrics.json's
`structured` section, see `structured_report`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from compression_core.methods.structured.apply import structured_report


def report(job: Any, model: nn.Module, metrics: dict[str, Any]) -> None:
    """Add `structured` to metrics for a job whose decoded model is `model` (needs the job's data)."""
    if job.data is None or job.spec.model is None:
        return
    names = [e["name"] for e in metrics["tensors"] if e.get("method", "").startswith("structured")]
    example = job.data.eval_set.tensors[0][:8]
    metrics["structured"] = structured_report(
        model, names, example, job.spec.model.arch, job.spec.model.kwargs
    )
