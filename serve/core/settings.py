"""The service's one settings object (pydantic-settings, environment prefix TRAYLENS_)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO_ROOT / "model" / "artifacts" / "traylens.onnx"
SUPPORTED_DB_SCHEMES = ("sqlite", "postgresql")
# An item whose confidence (detection x identity probability) is below this needs review.
DEFAULT_REVIEW_BELOW = 0.5


# The largest photo decoded: 24 MP covers the 12-16 MP of phone and kiosk cameras and the
# 6000x4000 of a 24 MP camera; a decoded 24 MP photo takes 72 MB (RGB), briefly.
DEFAULT_MAX_PIXELS = 24_000_000


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, as containers set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _env_int(name: str, default: int) -> int:
    """An integer environment variable not under the TRAYLENS_ prefix, else `default`."""
    value = os.environ.get(name, "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else default


class SettingsError(RuntimeError):
    """Raised when the environment holds an invalid setting (fail fast at startup)."""


class Settings(BaseSettings):
    """Every knob of the service; read from TRAYLENS_* environment variables or a .env file."""

    model_config = SettingsConfigDict(
        env_prefix="TRAYLENS_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(default=Path("var/data"), description="photos and the SQLite file")
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in data_dir")
    model_path: Path = Field(default=SHIPPED_MODEL, description="the ONNX model loaded at startup")
    max_upload_mb: float = Field(default=10.0, gt=0, le=512, description="per uploaded file")
    max_model_mb: float = Field(default=512.0, gt=0, description="per ONNX file an admin uploads")
    max_export_mb: float = Field(
        default=2048.0, gt=0, description="photos in one POST /v1/exports archive; more: 413"
    )
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, ge=10_000,
        description="largest photo (width x height) decoded; larger ones are refused from "
        "their header, before decoding (docs/RELIABILITY.md)",
    )
    image_retention_days: int = Field(
        default=365, ge=0, description="photos older than this are purged; 0 keeps them"
    )
    bootstrap_admin_key: SecretStr | None = Field(
        default=None, description="first admin key, created on a fresh install when no admin exists"
    )
    batch_size: int = Field(default=8, ge=1, le=128, description="images per ONNX Runtime run")
    max_batch_images: int = Field(default=64, ge=1, le=1024, description="images per batch request")
    top_k: int = Field(default=5, ge=1, le=20, description="alternatives reported per item")
    review_below: float = Field(
        default=DEFAULT_REVIEW_BELOW, ge=0, le=1,
        description="items with a lower confidence (or unidentified) get needs_review",
    )
    refine_masks: bool = Field(
        default=False,
        description="refine each food's mask to the food inside its container (GrabCut): "
                    "areas and outlines follow the food, not the plate, at about one more "
                    "network time per photo; each analysis records which masks it has "
                    "(docs/MODEL_CARD.md, 'Food masks against outlines drawn by hand')",
    )
    pair_window_minutes: int = Field(
        default=180, ge=1, le=24 * 60, description="an after photo pairs with a before this recent"
    )
    model_sync_seconds: float = Field(
        default=5.0, ge=0, description="how often workers adopt a newly loaded model; 0: never"
    )
    inference_concurrency: int = Field(
        default=1, ge=1, le=64,
        description="model runs at once per worker; ORT already uses its threads for one",
    )
    decode_concurrency: int = Field(
        default=2, ge=1, le=64,
        description="photo decodes at once per worker (each may briefly hold a full-size "
        "photo: max_pixels x 4 bytes); more requests wait their turn",
    )
    workers: int = Field(
        default_factory=lambda: _env_int("WEB_CONCURRENCY", 1), ge=1, le=256,
        description="worker processes serving on this machine (default: WEB_CONCURRENCY, "
        "which uvicorn --workers also reads, else 1); sizes intra_op_threads",
    )
    intra_op_threads: int = Field(
        default=0, ge=0,
        description="ONNX Runtime threads per worker; 0 = auto: max(1, cores // workers)",
    )
    webhook_dispatch_seconds: float = Field(
        default=5.0, ge=0,
        description="how often a worker sends due webhook deliveries and enqueues weekly "
                    "reports; 0: never (no background thread)",
    )
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="per webhook request (connect + read)"
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=50, description="tries per delivery before it is marked failed"
    )
    webhook_retry_base_seconds: float = Field(
        default=30.0, gt=0,
        description="first retry delay; each further retry doubles it (with jitter)",
    )
    webhook_retry_max_seconds: float = Field(
        default=6 * 3600.0, gt=0, description="the longest delay between two tries"
    )
    weekly_report_weekday: int = Field(
        default=1, ge=1, le=7,
        description="ISO weekday (1 = Monday) of the week after, in the canteen's time zone, "
                    "from which the weekly report of the week before goes out",
    )
    weekly_report_hour: int = Field(
        default=8, ge=0, le=23, description="local hour of that weekday"
    )
    db_retry_after_seconds: int = Field(
        default=5, ge=1, le=3600,
        description="Retry-After of the 503 answered while the database is unreachable",
    )
    # --- beyond one machine (docs/SCALING.md) ---------------------------------------------
    image_store: Literal["local", "s3"] = Field(
        default="local",
        description="where photos live: the local directory (data_dir/images) or an "
                    "S3-compatible bucket (s3_* settings)",
    )
    s3_bucket: str = Field(default="", description="the bucket (image_store = s3)")
    s3_prefix: str = Field(
        default="images/", description="key prefix inside the bucket (may be empty)"
    )
    s3_endpoint_url: str = Field(
        default="", description="S3-compatible endpoint (MinIO, Ceph...); empty: AWS S3"
    )
    s3_region: str = Field(default="", description="region; empty: boto3's default chain")
    s3_access_key_id: str = Field(
        default="", description="empty: boto3's chain (AWS_* variables, config, instance role)"
    )
    s3_secret_access_key: SecretStr | None = Field(default=None, description="with the key id")
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="path style for most self-hosted S3-compatible stores"
    )
    task_queue: Literal["inprocess", "redis"] = Field(
        default="inprocess",
        description="background work (webhooks, weekly reports, purges): a thread in each "
                    "service process, or a Dramatiq queue on Redis served by "
                    "`python -m serve worker` processes",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="the queue's Redis (task_queue = redis)"
    )
    queue_namespace: str = Field(
        default="traylens", description="Redis key prefix of the queue (one per deployment)"
    )
    image_purge_hours: float = Field(
        default=24.0, ge=0,
        description="how often the retention and orphan purge runs in the background; 0: "
                    "never (then run `python -m serve purge-images` yourself)",
    )

    # --- re-analysis of stored photos after a model change (serve/services/reanalysis.py) --
    reanalysis_lookback_days: int = Field(
        default=7, ge=0, le=3660,
        description="when another model is activated, photos taken in this many past days "
                    "are analysed again with it (their items replaced); 0: never",
    )
    reanalysis_max_per_run: int = Field(
        default=500, ge=1, le=100_000,
        description="analyses one run of the reanalyze_photos task tries at most; a run "
                    "that stops there enqueues the next",
    )
    reanalysis_batch: int = Field(
        default=16, ge=1, le=512,
        description="analyses claimed, run through the model and written per round of a "
                    "run (each one in its own transaction)",
    )
    reanalysis_interval_minutes: float = Field(
        default=60.0, ge=0,
        description="how often reanalyze_photos also runs on its own (picks up what a "
                    "stopped worker left); 0: only on activation and POST "
                    "/v1/model/reanalysis",
    )

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        """Only SQLite and PostgreSQL are supported (and tested)."""
        if value and value.split(":", 1)[0].split("+", 1)[0] not in SUPPORTED_DB_SCHEMES:
            raise ValueError(f"database_url must be sqlite or postgresql, got {value!r}")
        return value

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _check_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        """A guessable bootstrap key would open the whole service."""
        if value is not None and len(value.get_secret_value()) < 24:
            raise ValueError("bootstrap_admin_key must be at least 24 characters")
        return value

    @model_validator(mode="after")
    def _check_s3(self) -> Settings:
        """An S3 store needs its bucket (fail at startup, not at the first upload)."""
        if self.image_store == "s3" and not self.s3_bucket:
            raise ValueError("image_store = s3 needs TRAYLENS_S3_BUCKET")
        if self.s3_prefix and not self.s3_prefix.endswith("/"):
            object.__setattr__(self, "s3_prefix", self.s3_prefix + "/")
        return self

    @model_validator(mode="after")
    def _default_db(self) -> Settings:
        """Default database: a SQLite file inside the data directory."""
        if not self.database_url:
            object.__setattr__(
                self, "database_url", f"sqlite:///{(self.data_dir / 'traylens.db').resolve()}"
            )
        return self

    @model_validator(mode="after")
    def _auto_threads(self) -> Settings:
        """intra_op_threads 0: share the cores among the workers, so that two workers never
        do fewer images/s than one (each ORT would otherwise use every core)."""
        if self.intra_op_threads == 0:
            object.__setattr__(self, "intra_op_threads", max(1, usable_cores() // self.workers))
        return self

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def image_dir(self) -> Path:
        """Where content-addressed photos are stored."""
        return self.data_dir / "images"

    @property
    def model_dir(self) -> Path:
        """Where models uploaded by an admin are kept (for rollback)."""
        return self.data_dir / "models"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"TRAYLENS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
