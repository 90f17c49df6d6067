"""The library's admission checks (`compression_core.job.admission`) on a staged upload, as one 422 problem:
what `POST /jobs` and `POST /jobs/validate` refuse before anything is queued (an unknown architecture, a
state dict or data file that does not fit the model's input), each error naming its field."""

from __future__ import annotations

from typing import Any

from service.errors import InvalidSpec
from service.schemas import FieldError
from service.uploads import StagedUpload


def check_admission(staged: StagedUpload, spec: dict[str, Any]) -> None:
    """Raise the 422 for what stops this job (`spec` is the validated JSON spec); reads headers only."""
    from compression_core.job.admission import admission_problems
    from compression_core.spec import CHECKED_CONTEXT, Spec

    validated = Spec.model_validate(spec, context=CHECKED_CONTEXT)
    problems = admission_problems(
        validated, staged.files.get("model"), staged.files.get("data"), inputs=staged.files
    )
    if problems:
        errors = [FieldError(field=p.field, message=p.message, type="admission") for p in problems]
        raise InvalidSpec(
            "the job cannot run: " + "; ".join(f"{p.field}: {p.message}" for p in problems[:3]), errors
        )
