"""Schemathesis against the service's own OpenAPI document (in process, over ASGI): no 5xx, and every
response matches the schema it documents (status codes, content types, bodies, headers)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

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
    if (case.operation.method.upper(), case.operation.path) != ("POST", "/jobs"):
        case.call_and_validate(headers=auth)
        return
    response = case.call(headers=auth)
    case.validate_response(response, headers=auth, excluded_checks=[positive_data_acceptance])
    if case.method.upper() == "POST":
        assert response.status_code in UPLOAD_ANSWERS, response.text
    assert response.status_code < 500, response.text
