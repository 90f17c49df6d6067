"""`POST /jobs/validate`: the library's preflight over the same multipart as `POST /jobs`, nothing queued.

Only the upload's tensor names and shapes are read (the safetensors header; a torch file through
`torch.load(weights_only=True, mmap=True)`), the architecture is built with random weights, and the plans are
traced (compression_core/deploy/preflight.py). A plan that cannot run is a 422 problem naming each layer.
"""

from __future__ import annotations

import logging
from typing import Any

from service.errors import InvalidSpec, InvalidSubmission, NotAStateDict
from service.jobs import _spec_text, check_state_dict, parse_spec
from service.schemas import FieldError
from service.uploads import StagedUpload, unpack_tar

log = logging.getLogger(__name__)


def validate_upload(staged: StagedUpload, max_bytes: int, limit_name: str) -> dict[str, Any]:
    """The preflight report of a staged upload (consumes `staged`); raises the problems POST /jobs would.
    A tar is extracted (at most `max_bytes`) only after the spec passed."""
    from compression_core.deploy.preflight import preflight, upload_shapes
    from compression_core.errors import InputError, SpecError
    from compression_core.spec import CHECKED_CONTEXT, Spec

    try:
        if "model" not in staged.files:
            raise InvalidSubmission(
                "the `model` file is required", [FieldError(field="model", message="required")]
            )
        tar = staged.files["model"].suffix == ".tar"
        if not tar:  # the cheap check first: metadata (views, dtypes, sizes), before the spec's checks
            check_state_dict(staged.files["model"], "model")
        spec = Spec.model_validate(parse_spec(_spec_text(staged)), context=CHECKED_CONTEXT)
        if tar:
            unpack_tar(staged, max_bytes, limit_name)
            check_state_dict(staged.files["model"], "model")
        try:
            shapes = upload_shapes(staged.files["model"])
        except InputError as exc:
            raise NotAStateDict(f"model: {exc}", [FieldError(field="model", message=str(exc))]) from exc
        try:
            report = preflight(spec, shapes)
        except SpecError as exc:
            raise InvalidSpec(str(exc), [FieldError(field="spec.model", message=str(exc))]) from exc
    finally:
        staged.discard()
    if not report["ok"]:
        errors = [FieldError(field=e["field"], message=e["message"], type="plan") for e in report["errors"]]
        raise InvalidSpec("the plan cannot run: " + "; ".join(e.message for e in errors[:5]), errors)
    return report
