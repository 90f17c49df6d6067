"""Uploads and artifacts in an S3-compatible bucket (AWS S3, MinIO, Ceph, ...), for workers on machines
that share no volume with the API. Keys mirror the local layout under an optional prefix:
`jobs/<id>/inputs/<file>` and `jobs/<id>/artifacts/<sha256>/<name>`.

boto3 is an optional dependency (`pip install .[s3]`), imported only when MCS_STORAGE=s3. Credentials come
from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an instance role).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcs_common.settings import Settings

CHUNK = 1024 * 1024
_clients: dict[tuple[int, str | None, str], Any] = {}
_lock = threading.Lock()


def client(settings: Settings) -> Any:
    """One boto3 client per process and endpoint (clients are thread-safe, but not fork-safe: the pid
    is part of the key, so a prefork worker child makes its own)."""
    region = (
        settings.s3_region
        or os.environ.get("AWS_DEFAULT_REGION")
        or os.environ.get("AWS_REGION")
        or "us-east-1"
    )
    key = (os.getpid(), settings.s3_endpoint_url, region)
    with _lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": 5, "mode": "standard"},
                # path-style addressing: what MinIO and most self-hosted stores expect
                s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
            )
            _clients[key] = boto3.client(
                "s3", endpoint_url=settings.s3_endpoint_url, region_name=region, config=config
            )
        return _clients[key]


def object_key(settings: Settings, job_id: str, relative: str) -> str:
    return f"{settings.s3_prefix}jobs/{job_id}/{relative}"


def bucket(settings: Settings) -> str:
    settings.check_storage()
    assert settings.s3_bucket is not None
    return settings.s3_bucket


def put_file(settings: Settings, source: Path, key: str, sha256: str | None = None) -> None:
    """Upload a file (multipart for large ones); an object appears whole or not at all."""
    extra = {"Metadata": {"sha256": sha256}} if sha256 else {}
    client(settings).upload_file(str(source), bucket(settings), key, ExtraArgs=extra)


def get_file(settings: Settings, key: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    client(settings).download_file(bucket(settings), key, str(partial))
    partial.replace(target)


def delete_prefix(settings: Settings, prefix: str) -> int:
    """Delete every object under a prefix; returns how many."""
    s3, name, count = client(settings), bucket(settings), 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
            count += len(keys)
    return count


@dataclass
class ObjectStream:
    """An opened object: its size and its bytes in chunks (closed when the iteration ends)."""

    size: int
    body: Any

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self.body.iter_chunks(CHUNK)
        finally:
            self.body.close()


def open_object(settings: Settings, key: str) -> ObjectStream | None:
    """The object's stream, or None when it does not exist."""
    s3 = client(settings)
    try:
        response = s3.get_object(Bucket=bucket(settings), Key=key)
    except s3.exceptions.NoSuchKey:
        return None
    return ObjectStream(size=int(response["ContentLength"]), body=response["Body"])
