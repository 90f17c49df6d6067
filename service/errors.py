"""Errors of the service layer; each knows the RFC 9457 problem it becomes, so routes hold no HTTP codes."""

from __future__ import annotations

from service.schemas import FieldError


class ServiceError(Exception):
    status = 400
    title = "Bad request"
    type = "about:blank"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class JobNotFound(ServiceError):
    status, title, type = 404, "Job not found", "urn:mcs:problem:job-not-found"


class ArtifactNotFound(ServiceError):
    status, title, type = 404, "Artifact not found", "urn:mcs:problem:artifact-not-found"


class NotFound(ServiceError):
    status, title, type = 404, "Not found", "about:blank"


class JobConflict(ServiceError):
    status, title, type = 409, "Job is in the wrong state", "urn:mcs:problem:job-state"


class InvalidSubmission(ServiceError):
    status, title, type = 422, "Invalid submission", "urn:mcs:problem:invalid-submission"


class InvalidSpec(ServiceError):
    status, title, type = 422, "Invalid spec", "urn:mcs:problem:invalid-spec"


class NotAStateDict(ServiceError):
    # a model or teacher upload that no model source reads (a pickle, a bad ONNX graph, a torn checkpoint)
    status, title, type = 415, "Unsupported model file", "urn:mcs:problem:unsupported-model"


class PayloadTooLarge(ServiceError):
    status, title, type = 413, "Upload too large", "urn:mcs:problem:too-large"


class Unauthorized(ServiceError):
    status, title, type = 401, "Unauthorized", "urn:mcs:problem:unauthorized"


class Forbidden(ServiceError):
    status, title, type = 403, "Forbidden", "urn:mcs:problem:forbidden"


class Unavailable(ServiceError):
    status, title, type = 503, "Service unavailable", "urn:mcs:problem:unavailable"


class StorageFull(ServiceError):
    status, title, type = 507, "Insufficient Storage", "urn:mcs:problem:storage-full"


class LimitExceeded(ServiceError):
    status, title, type = 429, "Limit reached", "urn:mcs:problem:limit"


class IdempotencyKeyReused(ServiceError):
    status, title, type = 422, "Idempotency key reused", "urn:mcs:problem:idempotency-key-reused"
