"""/spec/schema: the JSON Schema of a compression spec, straight from the library's pydantic model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from service.deps import get_principal
from service.problems import problem_responses

router = APIRouter(tags=["spec"], dependencies=[Depends(get_principal)])


@router.get("/spec/schema", summary="JSON Schema of the compression spec", responses=problem_responses(401))
def spec_schema() -> dict[str, Any]:
    from compression_core.spec import Spec

    return Spec.model_json_schema()
