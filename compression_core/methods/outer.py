"""What an outer method (a search) offers the code that runs it: plan child jobs round by round, say how far
it is, assemble the outcome, run one child. The worker (`worker/search.py`) fans the children out over the
workers as ordinary jobs, and the library (`job/outer.py`) runs them one after another; both talk only to
this interface, so a new outer method is one folder and a registration (`OuterMethod`), never a worker or
service edit.

A driver is rebuilt from what is recorded at every step (the JSON spec and the children so far), so a
duplicate or late continuation in the service plans the same thing again. What the parent records between
rounds lives in its metrics under the method's field (`{"trace": [...], "total": n}`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from compression_core.methods.base import MethodSpec, ModelMethod, resolve

__all__ = ["Child", "ChildPlan", "OuterDriver", "OuterMethod", "Round", "driver_for", "outer_method"]


@dataclass
class ChildPlan:
    """One child job to run: its spec (JSON) and what the parent records of it (the child's `trial`
    column: parameters, label and whatever the driver needs to run it)."""

    spec: dict[str, Any]
    record: dict[str, Any]


@dataclass
class Round:
    """The next children (none: the outer job is finished), a note for the trace and the expected total."""

    children: list[ChildPlan] = field(default_factory=list)
    note: str = ""
    total: int = 0

    @property
    def finished(self) -> bool:
        return not self.children


@dataclass
class Child:
    """A child as the parent knows it: its record, final (or current) state and metrics."""

    index: int
    record: dict[str, Any]
    state: str
    metrics: dict[str, Any] | None = None
    seconds: float | None = None
    job_id: str | None = None
    reason: str | None = None


class OuterDriver(abc.ABC):
    """One outer job's logic. Built by `OuterMethod.make_driver(config, spec_json)`."""

    # rounds size themselves to the free workers (the worker asks the pool); otherwise one slot
    adaptive: bool = False

    def __init__(self, config: Any, spec: dict[str, Any]) -> None:
        self.config = config
        self.spec = spec  # the whole JSON spec, outer field included

    @abc.abstractmethod
    def plan(self, children: Sequence[Child], slots: int, model_path: Path) -> Round:
        """The next round from the children so far (all finished), `slots` children at once if it can."""

    @abc.abstractmethod
    def progress(self, children: Sequence[Child], total: int) -> tuple[float, str]:
        """(fraction, message) while the children run."""

    @abc.abstractmethod
    def finish(
        self,
        children: Sequence[Child],
        child_dir: Callable[[int], Path],
        out_dir: Path,
        *,
        trace: Sequence[dict[str, Any]],
        note: str,
    ) -> dict[str, Any]:
        """Write the outcome into `out_dir` (`child_dir(index)` holds a finished child's model.bin,
        model.pth and metrics.json) and return its metrics (written as metrics.json too)."""

    def summary(self, metrics: Mapping[str, Any], children: Sequence[Child]) -> str:
        """The last progress message."""
        return f"{len(children)} children"

    @abc.abstractmethod
    def run_child(
        self, model_path: Path, spec: Any, out_dir: Path, *, record: Mapping[str, Any], **options: Any
    ) -> dict[str, Any]:
        """Run one child (its validated spec) like `compress_file`, with the same options; its metrics."""


DriverFactory = Callable[[Any, dict[str, Any]], OuterDriver]  # (config, the JSON spec) -> driver


@dataclass(frozen=True)
class OuterMethod(ModelMethod):
    """Runs the rest of the spec as child jobs (a search): `driver(config, spec_json)` makes the
    `OuterDriver` that plans them round by round and assembles the outcome. The worker fans the children
    out over the workers; the library runs them here one after another (`job/outer.py`). The other methods
    never see its field."""

    driver: str | DriverFactory
    stage: ClassVar[str] = "outer"

    def make_driver(self, config: MethodSpec, spec: dict[str, Any]) -> OuterDriver:
        driver: OuterDriver = resolve(self.driver)(config, spec)
        return driver


def outer_method(spec: Any) -> OuterMethod | None:
    """The registered `OuterMethod` a spec (a JSON mapping or a validated spec) names, or None."""
    from compression_core.methods import registry

    for method in registry.model_methods().values():
        if isinstance(method, OuterMethod):
            value = spec.get(method.name) if isinstance(spec, Mapping) else getattr(spec, method.name, None)
            if value:
                return method
    return None


def driver_for(spec: Mapping[str, Any]) -> OuterDriver | None:
    """The driver of the outer method a stored JSON spec names, or None. The spec passed every check when
    it was submitted, so it is rebuilt without running them again (a search's checks validate its trials,
    which can cost seconds: issue 21)."""
    method = outer_method(spec)
    if method is None:
        return None
    from compression_core.spec import CHECKED_CONTEXT, Spec

    validated = Spec.model_validate(dict(spec), context=CHECKED_CONTEXT)
    return method.make_driver(validated.method(method.name), validated.model_dump(mode="json"))
