"""Where a job's files live under the data dir, and the fixed list of artifact names a client may ask for."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from service.settings import Settings

ARTIFACT_NAMES = ("model.pth", "model.bin", "metrics.json")
ARTIFACT_MEDIA_TYPES = {
    "model.pth": "application/octet-stream",
    "model.bin": "application/octet-stream",
    "metrics.json": "application/json",
}


def job_dir(settings: Settings, job_id: uuid.UUID | str) -> Path:
    return settings.jobs_dir / str(uuid.UUID(str(job_id)))


def artifacts_dir(settings: Settings, job_id: uuid.UUID | str) -> Path:
    return job_dir(settings, job_id) / "artifacts"


def artifact_path(settings: Settings, job_id: uuid.UUID | str, name: str) -> Path:
    """The path of an allowed artifact; never built from a client's string (it is looked up in the list)."""
    index = ARTIFACT_NAMES.index(name)  # ValueError for anything else
    return artifacts_dir(settings, job_id) / ARTIFACT_NAMES[index]


def sha256_file(path: Path, chunk_size: int = 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def publish(source: Path, target: Path) -> dict[str, object]:
    """Move a finished file into place atomically (same filesystem) and describe it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = sha256_file(source)
    size = source.stat().st_size
    os.replace(source, target)
    return {"name": target.name, "size": size, "sha256": digest}
