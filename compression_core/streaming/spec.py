"""The `outputs` part of a spec: which files a job writes besides `model.bin` and `metrics.json`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OutputsSpec(BaseModel):
    """`dense: false` skips the decoded dense weights (`model.pth`, or the sharded safetensors of a sharded
    input): for huge models that second full-size copy is most of the I/O, and `model.bin` decodes to it."""

    model_config = ConfigDict(extra="forbid")

    dense: bool = Field(default=True, description="write the decoded dense weights beside model.bin")
