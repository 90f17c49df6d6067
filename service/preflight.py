"""`POST /jobs/validate`: the library's preflight over the same multipart as `POST /jobs`, nothing queued.

Only the upload's tensor names and shapes are read, from its metadata after the same checks as POST /jobs
(a sharded checkpoint's from its shards' headers). The architecture is built and the plans are traced
(compression_core/deploy/preflight.py) in a child process bounded by the byte budget and a time limit
(compression_core/deploy/bounded.py), never in the API process: what a trace costs follows the spec, not
the upload (issue 21, item 2). At most MAX_CHILDREN run at once; a request that waits past WAIT_S is 503.
A plan that cannot run is a 422 problem naming each layer.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from service.admission import check_admission
from service.errors import InvalidSpec, InvalidSubmission, Unavailable
from service.jobs import parse_spec
from service.schemas import FieldError
from service.upload_checks import check_state_dict, not_a_state_dict, spec_text
from service.uploads import StagedUpload, unpack_tar

log = logging.getLogger(__name__)

MAX_CHILDREN = 2  # preflight children at once (each may use the byte budget)
WAIT_S = 60.0
_children = threading.BoundedSemaphore(MAX_CHILDREN)


def _run_bounded(
    spec: dict[str, Any], shapes: dict[str, tuple[int, ...]] | None, graph: Path | None = None
) -> dict[str, Any]:
    from compression_core.deploy.bounded import preflight_bounded

    if not _children.acquire(timeout=WAIT_S):
        raise Unavailable(f"{MAX_CHILDREN} preflights are running; try again in a minute")
    try:
        return preflight_bounded(spec, shapes, graph=graph)
    finally:
        _children.release()


def validate_upload(staged: StagedUpload, max_bytes: int, limit_name: str) -> dict[str, Any]:
    """The preflight report of a staged upload (consumes `staged`); raises the problems POST /jobs would.
    A tar is extracted (at most `max_bytes`) only after the spec passed."""
    from compression_core.deploy.preflight import preflight, upload_shapes
    from compression_core.errors import InputError, SpecError
    from compression_core.job.admission import carries_graph
    from compression_core.spec import CHECKED_CONTEXT, Spec

    try:
        if "model" not in staged.files:
            raise InvalidSubmission(
                "the `model` file is required", [FieldError(field="model", message="required")]
            )
        text, tar = spec_text(staged), staged.files["model"].suffix == ".tar"
        if not tar:  # the cheap check first: metadata (views, dtypes, sizes), before the spec's checks
            check_state_dict(staged.files["model"], "model")
        spec = Spec.model_validate(parse_spec(text), context=CHECKED_CONTEXT)
        if tar:
            unpack_tar(staged, max_bytes, limit_name)
            check_state_dict(staged.files["model"], "model")
        check_admission(staged, spec.model_dump(mode="json"))  # what POST /jobs refuses, from headers
        graph = staged.files["model"] if carries_graph(staged.files["model"], spec.model) else None
        try:  # an ONNX graph's tensors are read by its source in the child, not here
            shapes = None if graph is not None else upload_shapes(staged.files["model"])
        except InputError as exc:
            raise not_a_state_dict(exc, staged.files["model"], "model") from exc
        try:  # a data-free spec builds nothing; a model is built and traced in a bounded child
            report = (
                preflight(spec, shapes)
                if spec.model is None
                else _run_bounded(spec.model_dump(mode="json"), shapes, graph)
            )
        except InputError as exc:
            raise not_a_state_dict(exc, staged.files["model"], "model") from exc
        except SpecError as exc:
            raise InvalidSpec(str(exc), [FieldError(field="spec.model", message=str(exc))]) from exc
    finally:
        staged.discard()
    if not report["ok"]:
        errors = [FieldError(field=e["field"], message=e["message"], type="plan") for e in report["errors"]]
        raise InvalidSpec("the plan cannot run: " + "; ".join(e.message for e in errors[:5]), errors)
    return report
