"""What every part of the spec shares: the strict pydantic base, the selector, the default policy and the
bounds every method's fields use. Pydantic only (no torch), so the service publishes the schema cheaply."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["MAX_KEEP", "DefaultDtype", "DefaultPolicy", "Encoding", "Kind", "Selector", "Strict"]

MAX_KEEP = 2**40


class Strict(BaseModel):
    """Unknown fields are errors (a typo never silently falls back to a default)."""

    model_config = ConfigDict(extra="forbid")


class Kind(StrEnum):
    conv = "conv"
    linear = "linear"
    embedding = "embedding"
    any = "any"


class Encoding(StrEnum):
    huffman = "huffman"
    raw = "raw"


class DefaultDtype(StrEnum):
    keep = "keep"
    float16 = "float16"


class Selector(Strict):
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


class DefaultPolicy(Strict):
    """What happens to tensors no rule selects: kept as they are, or stored as float16."""

    dtype: DefaultDtype = DefaultDtype.keep
