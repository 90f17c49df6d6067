"""Python client of the model-compression service: `from client import Client`."""

from client.client import Client
from client.deployed import load_model  # lazy: imports torch only when called
from client.errors import (
    ApiError,
    BadRequest,
    ChecksumMismatch,
    ClientError,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TransportError,
    Unauthorized,
    WaitTimeout,
)
from client.models import TERMINAL_STATES, Artifact, Job, JobProgress
from client.retry import RetryPolicy

__all__ = [
    "TERMINAL_STATES",
    "ApiError",
    "Artifact",
    "BadRequest",
    "ChecksumMismatch",
    "Client",
    "ClientError",
    "Conflict",
    "Job",
    "JobProgress",
    "NotFound",
    "PayloadTooLarge",
    "RetryPolicy",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "WaitTimeout",
    "load_model",
]
