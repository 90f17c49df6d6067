"""Magnitude pruning to κ weights or to an N:M pattern (a per-tensor step): see README.md."""

from compression_core.methods.base import StepMethod
from compression_core.methods.prune.spec import PruneStep

METHOD = StepMethod(
    spec=PruneStep,
    apply="compression_core.methods.prune.apply:apply",
    shared="compression_core.methods.prune.apply:global_keeps",
    shared_streaming="compression_core.methods.prune.streaming:streaming_global_keeps",
)
