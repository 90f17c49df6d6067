"""Structured (channel) pruning (a per-tensor step, plus the smaller model's report): see README.md."""

from compression_core.methods.base import StepMethod
from compression_core.methods.structured.spec import StructuredStep

METHOD = StepMethod(
    spec=StructuredStep,
    apply="compression_core.methods.structured.apply:apply",
    report="compression_core.methods.structured.report:report",
)
