"""Low-rank factorization by truncated SVD (a per-tensor step): see README.md."""

from compression_core.methods.base import StepMethod
from compression_core.methods.lowrank.spec import LowRankStep

METHOD = StepMethod(spec=LowRankStep, apply="compression_core.methods.lowrank.apply:apply")
