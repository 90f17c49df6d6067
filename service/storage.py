"""Where a job's files live under the data dir, and the fixed list of artifact names a client may ask for."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from service.settings import Settings

ARTIFACT_NAMES = ("model.pth", "model.bin", "metrics.json", "report.html")
ARTIFACT_MEDIA_TYPES = {
    "model.pth": "application/octet-stream",
    "model.bin": "application/octet-stream",
    "metrics.json": "application/json",
    "report.html": "text/html; charset=utf-8",
}
# Published only when present: a job whose report could not be drawn still succeeds without one.
OPTIONAL_ARTIFACTS = frozenset({"report.html"})
_HEX64 = re.compile(r"[0-9a-f]{64}")


def job_dir(settings: Settings, job_id: uuid.UUID | str) -> Path:
    return settings.jobs_dir / str(uuid.UUID(str(job_id)))


def artifacts_dir(settings: Settings, job_id: uuid.UUID | str) -> Path:
    return job_dir(settings, job_id) / "artifacts"


def artifact_path(settings: Settings, job_id: uuid.UUID | str, name: str, sha256: str) -> Path:
    """Where an artifact with this content lives: `artifacts/<sha256>/<name>`. Content-addressed, so a
    stale worker that publishes late can never replace the bytes a job's record describes. The name is
    looked up in the allow-list and the digest must be hex: nothing from a client becomes a path."""
    index = ARTIFACT_NAMES.index(name)  # ValueError for anything else
    if not _HEX64.fullmatch(sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return artifacts_dir(settings, job_id) / sha256 / ARTIFACT_NAMES[index]


def sha256_file(path: Path, chunk_size: int = 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def publish(settings: Settings, job_id: uuid.UUID | str, source: Path, name: str) -> dict[str, object]:
    """Move a finished file into place atomically (a rename on one filesystem) and describe it: a reader
    sees the whole file or none, and the digest is of exactly the bytes moved."""
    digest = sha256_file(source)
    size = source.stat().st_size
    target = artifact_path(settings, job_id, name, digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return {"name": name, "size": size, "sha256": digest}
