"""The JSON compression spec: which tensors get which steps, validated before any work starts.

A spec is an ordered list of rules; the first rule whose selector matches a tensor owns it. Each rule runs
one of the allowed step combinations (prune, quantize, prune+quantize, lowrank) on the tensors it selects.
Checks that only need the spec happen here (pydantic `ValidationError`, naming the field); checks that
need the model (keep larger than a tensor, a rule that selects nothing) happen in the pipeline as
`SpecError`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compression_core.distill_spec import DistillSpec
from compression_core.errors import SpecError
from compression_core.lc.spec import LCSpec
from compression_core.streaming.spec import OutputsSpec  # stream (issue 14)
from compression_core.sws.spec import SWSSpec
from compression_core.training_spec import DataSpec, ModelSpec, RetrainSpec

MAX_KEEP = 2**40
MAX_CODEBOOK = 65536


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Kind(StrEnum):
    conv = "conv"
    linear = "linear"
    embedding = "embedding"
    any = "any"


class Scope(StrEnum):
    layer = "layer"
    global_ = "global"


class KMeansInit(StrEnum):
    linear = "linear"
    density = "density"
    kmeans_pp = "kmeans++"


class Encoding(StrEnum):
    huffman = "huffman"
    raw = "raw"


class DefaultDtype(StrEnum):
    keep = "keep"
    float16 = "float16"


class Selector(_Strict):
    """Which tensors a rule takes: glob(s) on the parameter name, a layer kind and a minimum size.

    Biases and normalization parameters (1-D tensors, names ending in `bias`, a name part starting with
    `bn`/`ln` or containing `norm`) are left out unless `include_bias_and_norm` is true or a matching
    pattern names them explicitly (no wildcard, or the pattern itself mentions bias/bn/ln/norm).
    """

    name: str | list[str] = Field(default="*", description="glob pattern(s) on the parameter name")
    kind: Kind = Kind.any
    min_numel: int = Field(default=0, ge=0, le=MAX_KEEP)
    include_bias_and_norm: bool = False

    @field_validator("name")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        patterns = [value] if isinstance(value, str) else value
        if not patterns or any(not p for p in patterns):
            raise ValueError("name patterns must be non-empty strings")
        return value

    @property
    def patterns(self) -> list[str]:
        return [self.name] if isinstance(self.name, str) else list(self.name)


class PruneStep(_Strict):
    """Magnitude pruning: keep exactly `keep` weights (κ) or the fraction `1 - sparsity`."""

    type: Literal["prune"] = "prune"
    keep: int | None = Field(default=None, ge=1, le=MAX_KEEP, description="number of weights kept (κ)")
    sparsity: float | None = Field(default=None, ge=0.0, lt=1.0, description="fraction of weights set to 0")
    scope: Scope = Field(default=Scope.layer, description="global ranks magnitudes across the rule's tensors")

    @model_validator(mode="after")
    def _exactly_one(self) -> PruneStep:
        if (self.keep is None) == (self.sparsity is None):
            raise ValueError("prune: give exactly one of keep or sparsity")
        return self


class QuantizeStep(_Strict):
    """Weight sharing: a 1-D k-means codebook of `k` float32 entries plus one index per weight."""

    type: Literal["quantize"] = "quantize"
    k: int = Field(ge=2, le=MAX_CODEBOOK, description="codebook size")
    init: KMeansInit = KMeansInit.kmeans_pp
    iters: int = Field(default=50, ge=1, le=10_000, description="maximum Lloyd iterations")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class LowRankStep(_Strict):
    """Truncated SVD of the matrix view, by fixed rank, by kept energy, or by the LC cost trade-off alpha."""

    type: Literal["lowrank"] = "lowrank"
    rank: int | None = Field(default=None, ge=1, le=MAX_KEEP)
    energy: float | None = Field(default=None, gt=0.0, le=1.0, description="kept fraction of sum(s_i^2)")
    alpha: float | None = Field(default=None, gt=0.0, description="LC rank selection weight of storage cost")
    mu: float = Field(default=1.0, gt=0.0, description="LC penalty weight of the dropped energy (with alpha)")
    normalize: bool = Field(default=False, description="with alpha: divide the dropped energy by ||W||^2")

    @model_validator(mode="after")
    def _exactly_one(self) -> LowRankStep:
        given = [n for n in ("rank", "energy", "alpha") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"lowrank: give exactly one of rank, energy or alpha (got {given or 'none'})")
        return self


class ChannelNorm(StrEnum):
    l1 = "l1"
    l2 = "l2"


class StructuredStep(_Strict):
    """Channel pruning: zero the round(sparsity · C) slices along `dim` (output channels / rows for dim 0)
    with the smallest L1 or L2 norm; shapes are kept (see compression_core/methods/structured.py)."""

    type: Literal["structured"] = "structured"
    sparsity: float = Field(ge=0.0, lt=1.0, description="fraction of the channels set to 0")
    norm: ChannelNorm = ChannelNorm.l1
    dim: int = Field(default=0, ge=0, le=7, description="axis of the removed slices (0: output channels)")


Step = Annotated[PruneStep | QuantizeStep | LowRankStep | StructuredStep, Field(discriminator="type")]

_ALLOWED_PLANS = {
    ("prune",),
    ("quantize",),
    ("prune", "quantize"),
    ("lowrank",),
    ("structured",),
    ("structured", "quantize"),
}


class Rule(_Strict):
    name: str | None = None
    select: Selector = Field(default_factory=Selector)
    steps: list[Step] = Field(min_length=1)
    encoding: Encoding = Encoding.huffman

    @model_validator(mode="after")
    def _allowed_combination(self) -> Rule:
        plan = tuple(step.type for step in self.steps)
        if plan not in _ALLOWED_PLANS:
            hint = " (prune and lowrank cannot combine)" if {"prune", "lowrank"} <= set(plan) else ""
            raise ValueError(
                f"steps: {list(plan)} is not an allowed combination{hint}; allowed: "
                "[prune], [quantize], [prune, quantize], [lowrank], [structured], [structured, quantize]"
            )
        return self

    @property
    def prune(self) -> PruneStep | None:
        return next((s for s in self.steps if isinstance(s, PruneStep)), None)

    @property
    def quantize(self) -> QuantizeStep | None:
        return next((s for s in self.steps if isinstance(s, QuantizeStep)), None)

    @property
    def lowrank(self) -> LowRankStep | None:
        return next((s for s in self.steps if isinstance(s, LowRankStep)), None)

    @property
    def structured(self) -> StructuredStep | None:
        return next((s for s in self.steps if isinstance(s, StructuredStep)), None)

    def label(self, index: int) -> str:
        return f"rule #{index} ({self.name})" if self.name else f"rule #{index}"


class DefaultPolicy(_Strict):
    """What happens to tensors no rule selects: kept as they are, or stored as float16."""

    dtype: DefaultDtype = DefaultDtype.keep


class Spec(_Strict):
    """A whole compression job. `model`, `data` and `retrain` switch on the data-aware path
    (evaluation before/after, iterative prune-retrain, centroid fine-tuning; see training_spec.py and
    data_aware.py); without them compression is data-free."""

    version: Literal[1] = 1
    rules: list[Rule] = Field(default_factory=list)
    default: DefaultPolicy = Field(default_factory=DefaultPolicy)
    model: ModelSpec | None = None
    data: DataSpec | None = None
    retrain: RetrainSpec | None = None
    lc: LCSpec | None = Field(
        default=None, description="run the LC algorithm (needs model and data) instead of direct compression"
    )
    sws: SWSSpec | None = Field(
        default=None, description="soft weight-sharing: retrain with a mixture prior (needs model and data)"
    )
    distill: DistillSpec | None = Field(
        default=None, description="train the student `model` from the job's teacher file before compression"
    )
    outputs: OutputsSpec = Field(default_factory=OutputsSpec)  # stream (issue 14): dense copy optional

    @model_validator(mode="after")
    def _data_aware_fields(self) -> Spec:
        if (self.data is not None or self.retrain is not None) and self.model is None:
            raise ValueError("model: `data` and `retrain` need `model` (the architecture to build)")
        if self.retrain is not None and self.data is None:
            raise ValueError("data: `retrain` needs `data` (a built-in or the uploaded data file)")
        if self.lc is not None and (self.model is None or self.data is None):
            raise ValueError("lc: the LC algorithm needs `model` and `data` (it trains the model)")
        if self.lc is not None and self.retrain is not None:
            raise ValueError("lc: the LC algorithm replaces `retrain`; give one of them")
        if self.sws is not None and (self.model is None or self.data is None):
            raise ValueError("sws: soft weight-sharing needs `model` and `data` (it trains the model)")
        if self.sws is not None and (self.lc is not None or self.retrain is not None):
            raise ValueError("sws: soft weight-sharing replaces `lc` and `retrain`; give one of them")
        if self.distill is not None and (self.model is None or self.data is None):
            raise ValueError("distill: distillation needs `model` (the student) and `data`")
        if self.distill is not None and (self.lc is not None or self.sws is not None):
            raise ValueError("distill: combine distillation with rules or `retrain`, not with `lc` or `sws`")
        return self


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of `Spec`, as the service publishes it."""
    return Spec.model_json_schema()


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the field path (e.g. `rules.0.steps.0.quantize.k`)."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "spec"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def parse_spec(text: str | bytes) -> Spec:
    """Validate JSON text into a `Spec`, raising `SpecError` with the field names on failure."""
    try:
        return Spec.model_validate_json(text)
    except ValidationError as error:
        raise SpecError(f"invalid spec: {format_validation_error(error)}") from None


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file (`SpecError` when unreadable or invalid)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read spec {path}: {error}") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"spec {path} is not valid JSON: {error}") from None
    return parse_spec(text)


def example_names() -> list[str]:
    """Names of the example specs shipped in `compression_core/examples` (without `.json`)."""
    from importlib.resources import files

    return sorted(
        p.name.removesuffix(".json")
        for p in files("compression_core.examples").iterdir()
        if p.name.endswith(".json")
    )


def example_spec(name: str) -> Spec:
    """A shipped example spec by name (`SpecError` listing the names when unknown)."""
    from importlib.resources import files

    if name not in example_names():
        raise SpecError(f"no example spec {name!r}; examples: {', '.join(example_names())}")
    return parse_spec(files("compression_core.examples").joinpath(f"{name}.json").read_text(encoding="utf-8"))
