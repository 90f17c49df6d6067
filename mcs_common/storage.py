"""Where a job's files live, and the fixed list of artifact names a client may ask for.

Two backends, chosen by MCS_STORAGE: `local` (the data dir, shared by the API and every worker: one
machine or an RWX volume) and `s3` (an S3-compatible bucket, for workers on machines with no shared
volume; see mcs_common/s3.py). With s3 the API still receives an upload into its data dir, puts it into the
bucket, and keeps nothing; a worker fetches the inputs into its own data dir, publishes the artifacts to
the bucket, and removes its local copies; the API streams downloads from the bucket.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from mcs_common.settings import Settings

ARTIFACT_NAMES = (
    "model.pth",
    "model.bin",
    "metrics.json",
    "report.html",
    "architecture.json",  # deploy (issue 12): with a `model` in the spec
    "model.onnx",
    "model.int8.onnx",
    "architecture.onnx",  # an ONNX upload pruned structurally: the unpruned graph that load_model rebuilds
    "search.csv",  # search jobs (worker/search.py): the table of trials and its plots
    "pareto.png",
    "sensitivity.png",
    "model.hf.tar",  # a Hugging Face checkpoint's dense output (issue 23): config, weights, tokenizer
    "model.quantized.tar",  # wquant: the compressed-tensors pack-quantized checkpoint
)
ARTIFACT_MEDIA_TYPES = {
    "model.pth": "application/octet-stream",
    "model.bin": "application/octet-stream",
    "metrics.json": "application/json",
    "report.html": "text/html; charset=utf-8",
    "architecture.json": "application/json",
    "model.onnx": "application/octet-stream",
    "model.int8.onnx": "application/octet-stream",
    "architecture.onnx": "application/octet-stream",
    "search.csv": "text/csv; charset=utf-8",
    "pareto.png": "image/png",
    "sensitivity.png": "image/png",
    "model.hf.tar": "application/x-tar",
    "model.quantized.tar": "application/x-tar",
}
# Published only when present: a job whose report could not be drawn still succeeds without one; the
# deployment files exist only when the spec names a model (and int8), the search files only for searches;
# stream (issue 14): model.pth is absent for sharded inputs and for specs with `outputs.dense` false.
OPTIONAL_ARTIFACTS = frozenset(
    {
        "report.html",
        "model.pth",
        "architecture.json",
        "model.onnx",
        "model.int8.onnx",
        "architecture.onnx",
        "search.csv",
        "pareto.png",
        "sensitivity.png",
        "model.hf.tar",
        "model.quantized.tar",
    }
)
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
    """Move a finished file into place atomically (a rename on one filesystem, or one S3 PUT) and describe
    it: a reader sees the whole file or none, and the digest is of exactly the bytes moved."""
    digest = sha256_file(source)
    size = source.stat().st_size
    target = artifact_path(settings, job_id, name, digest)
    if settings.storage == "s3":
        from mcs_common import s3

        s3.put_file(settings, source, _key(settings, target), digest)
        source.unlink()
        return {"name": name, "size": size, "sha256": digest}
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return {"name": name, "size": size, "sha256": digest}


log = logging.getLogger(__name__)


def _key(settings: Settings, path: Path) -> str:
    """The object key of a path under the data dir's jobs folder: the same layout in the bucket."""
    relative = path.relative_to(settings.jobs_dir)
    from mcs_common import s3

    return s3.object_key(settings, relative.parts[0], "/".join(relative.parts[1:]))


def open_artifact(settings: Settings, job_id: uuid.UUID | str, name: str, sha256: str) -> Any:
    """A published artifact: its Path (local) or an `s3.ObjectStream`; None when it is not there."""
    path = artifact_path(settings, job_id, name, sha256)
    if settings.storage == "s3":
        from mcs_common import s3

        return s3.open_object(settings, _key(settings, path))
    return path if path.is_file() else None


def store_inputs(settings: Settings, job_id: uuid.UUID | str) -> None:
    """After the API accepted an upload into `jobs/<id>/inputs/`: with s3, put the files into the bucket
    (where any worker can fetch them) and keep no local copy. Local storage: nothing to do."""
    if settings.storage != "s3":
        return
    from mcs_common import s3

    root = job_dir(settings, job_id)
    for path in sorted((root / "inputs").iterdir()):
        s3.put_file(settings, path, _key(settings, path))
    shutil.rmtree(root, ignore_errors=True)


def fetch_inputs(settings: Settings, job_id: uuid.UUID | str, inputs: dict[str, str]) -> None:
    """Make a job's inputs (role -> `inputs/<file>`) present under the worker's own data dir."""
    if settings.storage != "s3":
        return
    from mcs_common import s3

    root = job_dir(settings, job_id)
    for relative in inputs.values():
        target = root / relative
        if root not in target.resolve().parents:  # from the job row; still, never outside the job dir
            raise ValueError(f"input path outside the job folder: {relative!r}")
        s3.get_file(settings, _key(settings, target), target)


def release_local_copies(settings: Settings, job_id: uuid.UUID | str) -> None:
    """A worker done with a job: with s3 the bucket holds everything, so its local copies go."""
    if settings.storage == "s3":
        shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)


def remove_job_files(settings: Settings, job_id: uuid.UUID | str) -> None:
    """A deleted job's inputs and artifacts, wherever they are. Best effort, like removing a folder: a
    bucket that cannot be reached now leaves objects behind (logged with their prefix)."""
    shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)
    if settings.storage == "s3":
        from mcs_common import s3

        prefix = s3.object_key(settings, str(uuid.UUID(str(job_id))), "")
        try:
            s3.delete_prefix(settings, prefix)
        except Exception as exc:  # noqa: BLE001 - the job record is gone either way
            log.warning("could not delete s3://%s/%s: %r", settings.s3_bucket, prefix, exc)
