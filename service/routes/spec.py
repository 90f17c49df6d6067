"""/spec/schema: the JSON Schema of a compression spec, straight from the library's pydantic model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

router = APIRouter(tags=["spec"])


@router.get("/spec/schema", summary="JSON Schema of the compression spec")
def spec_schema() -> dict[str, Any]:
    from compression_core.spec import Spec

    return Spec.model_json_schema()
