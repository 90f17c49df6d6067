"""Compression methods, one folder each (`prune/`, `quantize/`, `lowrank/`, `structured/`, `retrain/`,
`lc/`, `sws/`, `distill/`), behind one interface (`base.py`) and one registry (`registry.py`).

Outside this package, code asks the registry; it never imports a particular method's module.
See docs/methods.md for how to add a method.
"""

from compression_core.methods.base import (
    CompressMethod,
    DeployMethod,
    MethodSpec,
    ModelMethod,
    Outcome,
    PrepareMethod,
    StepContext,
    StepMethod,
    StepSpec,
    Work,
)
from compression_core.methods.registry import (
    ENTRY_POINT_GROUP,
    allowed_plans,
    method_label,
    model_methods,
    needs_data,
    register,
    reload,
    step_methods,
    unregister,
    upload_roles,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "CompressMethod",
    "DeployMethod",
    "MethodSpec",
    "ModelMethod",
    "Outcome",
    "PrepareMethod",
    "StepContext",
    "StepMethod",
    "StepSpec",
    "Work",
    "allowed_plans",
    "method_label",
    "model_methods",
    "needs_data",
    "register",
    "reload",
    "step_methods",
    "unregister",
    "upload_roles",
]
