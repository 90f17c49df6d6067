"""Fixtures for the storage tests: a real S3-compatible server (moto) on loopback, and a bucket in it."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "mcs-test",
    "AWS_SECRET_ACCESS_KEY": "mcs-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread of this process, on a free loopback port: the worker subprocess
    reaches it over HTTP like any S3-compatible store."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    return dict(CREDENTIALS)


@pytest.fixture
def bucket(s3_endpoint: str, s3_env: dict[str, str]) -> str:
    import boto3

    name = f"mcs-test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def bucket_keys(endpoint: str, name: str) -> list[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=name)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
