"""Schemathesis against the service's own OpenAPI document (in process, over ASGI): no 5xx, and every
response matches the schema it documents (status codes, content types, bodies, headers)."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from svc_helpers import SPEC, write_model

from service.app import create_app
from service.auth import create_token

from .conftest import REDIS_URL, rel_settings

_DATA = Path(tempfile.mkdtemp(prefix="mcs-schemathesis-"))
APP = create_app(rel_settings(_DATA / "data", REDIS_URL, f"st-{uuid.uuid4().hex[:8]}"))
with APP.state.sessions() as _session:
    _, _SECRET = create_token(_session, "schemathesis", admin=True)
AUTH = {"Authorization": f"Bearer {_SECRET}"}
# A schema-valid upload may still be refused for what no schema can say: bytes that are not a state dict
# (415), a spec that does not validate (422), a body over a limit (413, 429).
UPLOAD_ANSWERS = {202, 401, 413, 415, 422, 429}
UPLOAD_ROUTES = {("POST", "/jobs"): UPLOAD_ANSWERS, ("POST", "/jobs/validate"): {200, 401, 413, 415, 422}}

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_matches_its_openapi_document(case: schemathesis.Case) -> None:
    headers = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    negative_headers = headers is not None and headers.mode == GenerationMode.NEGATIVE
    # a valid token for every case, except one made to test a missing or broken header (auth included)
    auth = None if negative_headers else AUTH
    route = (case.operation.method.upper(), case.operation.path)
    if route not in UPLOAD_ROUTES:
        case.call_and_validate(headers=auth)
        return
    response = case.call(headers=auth)
    case.validate_response(response, headers=auth, excluded_checks=[positive_data_acceptance])
    if case.method.upper() == "POST":
        assert response.status_code in UPLOAD_ROUTES[route], response.text
    assert response.status_code < 500, response.text


MODEL_BYTES = write_model(_DATA).read_bytes()
stateful_schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
stateful_schema.config.generation.update(modes=[GenerationMode.POSITIVE])  # the stateless test negates


class JobLifecycle(stateful_schema.as_state_machine()):  # type: ignore[misc]
    """The stateful phase: from `POST /jobs` the 202's OpenAPI links lead to the job's routes (get,
    cancel, delete, artifacts), every response checked with all of Schemathesis' checks. The upload is
    made valid here (a real state dict, a valid spec): the stateless test above fuzzes it; this one walks
    the job's lifecycle, which random bytes (415) never reach."""

    def before_call(self, case: schemathesis.Case) -> None:
        if (case.method.upper(), case.path) == ("POST", "/jobs"):
            case.body = {"model": MODEL_BYTES, "spec": json.dumps(SPEC)}

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
        return {"headers": AUTH}

    def validate_response(self, response: Any, case: schemathesis.Case, *args: Any, **kwargs: Any) -> None:
        if (case.method.upper(), case.path) != ("POST", "/jobs"):
            super().validate_response(response, case, *args, **kwargs)
            return
        # the upload was replaced by a valid one above: a case generated as negative no longer is
        case.validate_response(
            response,
            excluded_checks=[negative_data_rejection],
            transport_kwargs=kwargs or None,
            recorder=getattr(self, "recorder", None),
        )


def test_the_job_lifecycle_through_the_openapi_links() -> None:
    reached: set[str] = set()
    original = JobLifecycle.after_call

    def record(self: JobLifecycle, response: Any, case: schemathesis.Case) -> None:
        if case.path.startswith("/jobs/{job_id}") and response.status_code < 400:
            reached.add(f"{case.method.upper()} {case.path}")
        original(self, response, case)

    JobLifecycle.after_call = record  # type: ignore[method-assign]
    try:
        run_state_machine_as_test(
            JobLifecycle,
            settings=settings(
                max_examples=12,
                stateful_step_count=6,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        JobLifecycle.after_call = original  # type: ignore[method-assign]
    assert "GET /jobs/{job_id}" in reached, reached  # the links lead past POST /jobs (were all 404)
