"""Configuration from the environment (prefix `MCS_`), so the same code runs embedded and in a cluster.

With nothing set, the service runs *embedded*: SQLite and a Kombu `filesystem://` broker under the data dir,
and `mcs serve` starts one worker as its child. Setting `MCS_BROKER_URL` (e.g. `redis://...`) and
`MCS_DATABASE_URL` (e.g. `postgresql+psycopg://...`) switches to separate API and worker processes.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

QueueKey = Literal["cpu", "gpu"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MCS_", extra="ignore")

    data_dir: Path = Field(
        default=Path("mcs-data"), description="Uploads, artifacts, SQLite and the embedded broker."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///DATA_DIR/mcs.db."
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker URL; default filesystem:// (embedded)."
    )
    max_upload_bytes: int = Field(
        default=2 * 1024**3, gt=0, description="Cap on one POST /jobs body, in bytes."
    )
    max_field_bytes: int = Field(
        default=1024**2, gt=0, description="Cap on a non-file form field (the spec)."
    )
    soft_time_limit_s: int = Field(
        default=3600, gt=0, description="A job past this fails with a clear message."
    )
    hard_time_limit_s: int = Field(default=3900, gt=0, description="The worker child is killed past this.")
    lease_s: float = Field(
        default=60.0, gt=0, description="A running job's lease; renewed by a heartbeat thread."
    )
    max_attempts: int = Field(
        default=3, gt=0, description="Deliveries of one job before the reaper fails it."
    )
    job_memory_bytes: int | None = Field(
        default=None,
        gt=0,
        description="Memory one job may allocate in its worker child beyond what the child holds when the "
        "job starts (RLIMIT_DATA, Linux); past it the job fails naming this setting instead of the kernel "
        "killing the child. Unset: no cap.",
    )
    reaper_interval_s: float = Field(
        default=30.0, ge=0, description="How often the API requeues lost jobs; 0: never."
    )
    progress_interval_s: float = Field(
        default=0.5, ge=0, description="Least time between two progress writes."
    )
    cancel_poll_s: float = Field(
        default=0.2, ge=0, description="Least time between two cancel checks in the DB."
    )
    search_slots: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Trials per round of a budget search; default: the worker processes consuming the "
        "job's queue (asked through Celery's inspect), 1 if none answer.",
    )
    queue_cpu: str = Field(default="cpu", description="Broker queue name for CPU jobs.")
    queue_gpu: str = Field(default="gpu", description="Broker queue name for GPU jobs.")
    auth: Literal["enabled", "disabled"] = Field(
        default="enabled",
        description="Bearer tokens (`mcs token create`) on every route but /healthz and /readyz. "
        "`mcs serve` on a loopback address with MCS_AUTH unset runs with auth disabled (and says so).",
    )
    allow_insecure: bool = Field(
        default=False, description="Let the API bind a non-loopback address with auth disabled."
    )
    requeue_after_s: float = Field(
        default=600.0,
        gt=0,
        description="A job queued this long without a worker taking it is sent to the broker again.",
    )
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without a token (default: an admin token is needed)."
    )
    storage: Literal["local", "s3"] = Field(
        default="local",
        description="Where uploads and artifacts live for the workers: the data dir (shared by every "
        "process) or an S3-compatible bucket (workers on machines without a shared volume).",
    )
    s3_bucket: str | None = Field(default=None, description="The bucket, when storage is s3.")
    s3_endpoint_url: str | None = Field(
        default=None, description="e.g. http://minio:9000; unset: AWS S3. Credentials: the AWS_* variables."
    )
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket, e.g. `mcs/`.")
    s3_region: str | None = Field(default=None, description="Region; unset: AWS_DEFAULT_REGION or us-east-1.")
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses of reverse proxies whose X-Forwarded-For/-Proto are "
        "believed (logged client address, scheme); empty: no one's, not even loopback's.",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Signs the web page's session cookies; unset: a random key kept in the data dir "
        "(set it when API replicas do not share one data dir).",
    )
    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _storage_complete(self) -> Settings:
        self.check_storage()
        return self

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the API process also runs a worker child over the filesystem."""
        return self.broker_url is None or self.broker_url.startswith("filesystem://")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'mcs.db'}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "enabled"

    def check_bind(self) -> None:
        """Refuse to serve an open API to the network: auth disabled is for loopback only."""
        if not self.auth_enabled and not is_loopback(self.host) and not self.allow_insecure:
            raise ValueError(
                f"refusing to listen on {self.host} with auth disabled (MCS_AUTH=disabled): anyone on the "
                "network could submit jobs and read every result. Create tokens (`mcs token create`) and "
                "unset MCS_AUTH, bind 127.0.0.1, or set MCS_ALLOW_INSECURE=1 if you really mean it."
            )

    def check_storage(self) -> None:
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("MCS_STORAGE=s3 needs MCS_S3_BUCKET (and MCS_S3_ENDPOINT_URL unless AWS S3)")

    def queue_name(self, key: str) -> str:
        return self.queue_gpu if key == "gpu" else self.queue_cpu

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.jobs_dir, self.staging_dir):
            path.mkdir(parents=True, exist_ok=True)
        if self.embedded:
            for sub in ("messages", "control"):
                (self.broker_dir / sub).mkdir(parents=True, exist_ok=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_with_overrides(
    data_dir: Path | None = None, host: str | None = None, port: int | None = None
) -> Settings:
    """Settings from the environment, with command-line values taking precedence: they are written to
    the environment, so child processes (the embedded worker) see the same values."""
    for key, value in (("MCS_DATA_DIR", data_dir), ("MCS_HOST", host), ("MCS_PORT", port)):
        if value is not None:
            os.environ[key] = str(value)
    get_settings.cache_clear()
    return get_settings()
