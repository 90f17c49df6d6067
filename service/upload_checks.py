"""The checks of a staged upload's files before a job is queued: each model input (and a method's extra
input, e.g. `teacher`) from its metadata alone, and the data file as the model's kind reads it; plus where
the spec comes from (the `spec` field or a `spec_file` upload). Split out of `service/jobs.py`; used by
`POST /jobs` (`service.jobs.create_job`) and `POST /jobs/validate` (`service.preflight`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from service.errors import InvalidSubmission, NotAStateDict
from service.schemas import FieldError
from service.uploads import StagedUpload, state_dict_roles


def check_state_dict(path: Path, role: str, model: Any = None) -> None:
    """Refuse anything that is not a model input we can compress, from the file's metadata alone (each kind
    of input checks its own: `compression_core.sources.check_upload`): the API never loads an upload's
    tensors (memory per submit stays O(header)); the worker loads them."""
    from compression_core.errors import InputError, UnsupportedModel
    from compression_core.sources import check_upload

    try:
        check_upload(path, model)
    except UnsupportedModel as exc:  # readable, but a model this service will not build (remote code)
        refused = not_a_state_dict(exc, path, role)
        raise InvalidSubmission(refused.detail, refused.errors) from exc
    except InputError as exc:
        raise not_a_state_dict(exc, path, role) from exc


def not_a_state_dict(error: Exception, path: Path, role: str) -> NotAStateDict:
    """The 415 for an upload's file, its message without the server's staging folder (a library message
    may name a file by its full path)."""
    message = str(error).replace(f"{path.parent}{os.sep}", "").replace(str(path.parent), "")
    message = message.removeprefix(f"{path.name}: ")
    return NotAStateDict(f"{role}: {message}", [FieldError(field=role, message=message)])


def check_data_for_model(staged: StagedUpload, model: Any) -> None:
    """The data file as the model's kind reads it (a language model's token ids), from its headers: 422
    naming `data` (`compression_core.sources.check_data_upload`)."""
    from compression_core.errors import InputError
    from compression_core.sources import check_data_upload

    if "data" not in staged.files or "model" not in staged.files:
        return
    path = staged.files["data"]
    try:
        check_data_upload(staged.files["model"], model, path)
    except InputError as exc:
        refused = not_a_state_dict(exc, path, "data")
        raise InvalidSubmission(refused.detail, refused.errors) from exc


def model_spec_of(spec: dict[str, Any]) -> Any:
    """The validated spec's `model` field as the library's model (None without one)."""
    from compression_core.spec import ModelSpec

    return ModelSpec.model_validate(spec["model"]) if spec.get("model") else None


def check_state_dicts(staged: StagedUpload, model: Any = None) -> None:
    """The model and every method's extra input (e.g. `teacher`), from their metadata; with the spec's
    `model`, the model input as it describes it (a Hugging Face checkpoint when it says `hf`)."""
    for role in state_dict_roles():
        if role in staged.files:
            check_state_dict(staged.files[role], role, model if role == "model" else None)


def spec_text(staged: StagedUpload) -> str:
    inline, file = staged.fields.get("spec"), staged.files.get("spec_file")
    if inline is not None and file is not None:
        raise InvalidSubmission(
            "give the spec once: either the `spec` field or the `spec_file` file",
            [FieldError(field="spec", message="given twice")],
        )
    if inline is not None:
        return inline
    if file is not None:
        return file.read_text("utf-8", errors="replace")
    raise InvalidSubmission(
        "a spec is required: the `spec` form field (JSON) or a `spec_file` upload",
        [FieldError(field="spec", message="field required")],
    )
