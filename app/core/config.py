"""Service configuration (pydantic-settings, environment prefix ``WEDGENET_``)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All knobs of the API and the worker; every field is read from ``WEDGENET_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="WEDGENET_", extra="ignore")

    database_url: str = "sqlite:///./var/wedgenet.db"
    #: SQLite only: ``normal`` syncs the write-ahead log at checkpoints, not at every commit
    #: (a commit survives a crash of any process, but the last ones may be lost to a power
    #: cut or an OS crash); ``full`` syncs at every commit (durable, about one fsync per write)
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    broker_url: str = "filesystem://"
    #: folder of the filesystem broker (embedded mode); ignored for other brokers
    broker_dir: str = "./var/broker"
    #: comma-separated API keys; empty means "no key accepted" unless ``embedded`` is set
    api_keys: str = ""
    #: embedded single-machine mode: accept the dev key ``dev-key`` when no keys are configured
    embedded: bool = False
    migrate_on_start: bool = True

    # upload limits
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_array_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    max_npz_members: int = Field(default=64, ge=1)
    max_layers: int = Field(default=16, ge=1)
    max_predict_rows: int = Field(default=100_000, ge=1)
    #: total size the members of an ``.npz`` announce (decompressed), checked before reading
    max_decompressed_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    #: largest decompressed / compressed size ratio of an ``.npz`` upload ...
    max_compression_ratio: float = Field(default=100.0, ge=1)
    #: ... once it decompresses to more than this many bytes (small archives may compress
    #: arbitrarily well)
    compression_ratio_min_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    #: nesting depth of uploaded ``.json`` files (and ``.safetensors`` headers)
    max_json_depth: int = Field(default=32, ge=2, le=200)
    #: uploads parsed and stored at the same time (worker threads); more wait their turn,
    #: their bodies already spooled to temporary files
    max_concurrent_uploads: int = Field(default=2, ge=1)

    # per-key quotas (app/quotas.py), answered 429 with Retry-After; 0 disables each
    #: queued + running jobs of one API key
    quota_active_jobs: int = Field(default=100, ge=0)
    #: bytes of arrays one API key stores (datasets and weight sets, distinct blobs)
    quota_storage_bytes: int = Field(default=1024**3, ge=0)
    #: requests per second one API key may make on average (a token bucket per key: in
    #: Redis when the broker is Redis, shared by all API processes; else per process) ...
    rate_limit: float = Field(default=50.0, ge=0)
    #: ... and at once after a pause
    rate_burst: int = Field(default=200, ge=1)

    # solve limits
    max_dictionary_columns: int = Field(default=2_000_000, ge=1)
    #: ``max_time`` of solve jobs that do not set one (seconds): the best network so far is
    #: stored, uncertified, when it runs out; keep it below ``task_soft_time_limit``
    default_max_time: float = Field(default=900.0, gt=0)

    # job execution (recovery: a killed worker's job runs again within stale_after +
    # sweep_interval, a lost message is re-published within queued_stale_after +
    # sweep_interval; docs/service.md "Jobs: reliability model")
    #: seconds between heartbeats of a running job (written by the job's process and by its
    #: worker's main process, which no long computation in the job can hold up)
    heartbeat_interval: float = Field(default=1.0, gt=0)
    #: a cancelled (or taken-over) job gets this long to stop at its next checkpoint; then
    #: a pool worker process running it exits (the pool starts a fresh one)
    cancel_grace: float = Field(default=10.0, gt=0)
    #: a running job whose heartbeat is older than this is re-queued by the sweeper (keep it
    #: several heartbeat intervals, and well above the clock skew between machines)
    stale_after: float = Field(default=5.0, gt=0)
    #: a queued job whose message is no longer in the broker queue this long after it was
    #: published (a worker took it and died before claiming the job) is re-published
    queued_stale_after: float = Field(default=10.0, gt=0)
    sweep_interval: float = Field(default=2.0, gt=0)
    #: stopping a worker (SIGTERM: Celery's warm shutdown; ``wedgenet serve`` stopping): its
    #: running jobs get this long to finish, then they are re-queued for other workers (or the
    #: next start) and stop at their next checkpoint; ``serve`` ends what is left of its worker
    #: ``shutdown_grace + 4`` seconds after the signal
    shutdown_grace: float = Field(default=3.0, ge=0)
    #: run the sweeper inside the API process as well as inside workers
    api_sweeper: bool = True
    max_attempts: int = Field(default=5, ge=1)
    task_soft_time_limit: int = Field(default=3600, ge=1)
    task_time_limit: int = Field(default=3700, ge=1)
    worker_concurrency: int = Field(default=1, ge=1)

    # distributed pricing (solve jobs with scan_parts > 1)
    #: seconds between the coordinator's polls of the parts table while others work
    scan_poll_interval: float = Field(default=0.02, gt=0)
    #: upper limit of the ``scan_parts`` job parameter
    max_scan_parts: int = Field(default=64, ge=1)

    # l2 bound of p = 2 solve jobs (wedgenet.l2_gap_report)
    #: exact mode (a certified lower bound) when the arrangement has at most this many
    #: activation patterns; otherwise the sampled mode (an estimate)
    l2_bound_max_patterns: int = Field(default=2000, ge=1)
    #: random neurons drawn by the sampled fallback
    l2_bound_sampled_patterns: int = Field(default=500, ge=1)
    #: no l2 bound at all (recorded as skipped) for datasets with more samples than this
    l2_bound_max_samples: int = Field(default=1000, ge=1)

    def api_key_list(self) -> list[str]:
        keys = [k.strip() for k in self.api_keys.split(",") if k.strip()]
        if not keys and self.embedded:
            keys = [DEV_KEY]
        return keys

    def broker_transport_options(self) -> dict[str, object]:
        if self.broker_url.startswith("filesystem"):
            base = Path(self.broker_dir)
            queue = base / "queue"
            processed = base / "processed"
            return {
                "data_folder_in": str(queue),
                "data_folder_out": str(queue),
                "processed_folder": str(processed),
                "control_folder": str(base / "control"),
                "store_processed": False,
                "polling_interval": 0.1,
            }
        if self.broker_url.startswith(("redis", "rediss")):
            # a lost ack is redelivered after this long; the sweeper usually acts first
            return {"visibility_timeout": max(self.task_time_limit * 2, 3600)}
        return {}


DEV_KEY = "dev-key"


def owner_of(api_key: str) -> str:
    """The owner id stored in the database for an API key (keys themselves are never stored)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


@lru_cache
def get_settings() -> Settings:
    return Settings()
