"""Every environment variable the code reads is documented in settings and in the README, and every bad value is refused in one line."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import dagster as dg
import pytest

from wealth_pipeline.environment import REPO_ROOT
from wealth_pipeline.lakehouse.resource import LakehouseResource
from wealth_pipeline.providers.http_adapters import HTTP_ENVIRONMENT
from wealth_pipeline.settings import (
    DEPLOY_ENVIRONMENT,
    ENVIRONMENT,
    TEST_ENVIRONMENT,
    ConfigurationError,
    Settings,
)

VARIABLE = re.compile(r"[\"'](WEALTH_[A-Z0-9_]+)[\"']")


def _read_by(folder: str, pattern: str = "*.py") -> set[str]:
    found: set[str] = set()
    for path in (REPO_ROOT / folder).rglob(pattern):
        if path.name == "settings.py":  # the catalogue itself
            continue
        found |= set(VARIABLE.findall(path.read_text()))
    return found


def test_every_variable_the_code_reads_is_in_settings() -> None:
    assert _read_by("wealth_pipeline") - set(ENVIRONMENT) == set()
    assert set(HTTP_ENVIRONMENT) <= set(ENVIRONMENT)
    known = set(ENVIRONMENT) | set(TEST_ENVIRONMENT) | set(DEPLOY_ENVIRONMENT)
    assert _read_by("wealth_pipeline_tests") - known == set()


def test_every_variable_the_deployment_files_use_is_catalogued() -> None:
    texts = [(REPO_ROOT / name).read_text() for name in ("docker-compose.yml", ".env.example")]
    texts += [p.read_text() for p in (REPO_ROOT / "deploy").rglob("*") if p.is_file()]
    used = {m for text in texts for m in re.findall(r"\b(WEALTH_[A-Z0-9_]+)", text)}
    assert used - set(ENVIRONMENT) - set(DEPLOY_ENVIRONMENT) == set()


def test_every_variable_is_in_the_readme_configuration_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [name for name in {**ENVIRONMENT, **TEST_ENVIRONMENT, **DEPLOY_ENVIRONMENT} if f"`{name}`" not in readme]
    assert missing == []


# Each bad value of #18's list (and the other kinds the settings check): the one-line error names the
# variable and says what would be valid. The oracle is the message itself, written out by hand.
BAD_VALUES = [
    ("WEALTH_DATABASE_URL", "not-a-url", "WEALTH_DATABASE_URL: expected a PostgreSQL URL postgresql://"),
    ("WEALTH_DATABASE_URL", "postgresql://u:secret@host:notaport/db", "the port is not a number"),
    ("WEALTH_DAGSTER_DATABASE_URL", "mysql://u@h/db", "WEALTH_DAGSTER_DATABASE_URL: expected a PostgreSQL URL"),
    ("WEALTH_PARTITION_START", "01/02/2023", "WEALTH_PARTITION_START='01/02/2023': expected a date YYYY-MM-DD"),
    ("WEALTH_PARTITION_START", "2024-13-01", "WEALTH_PARTITION_START='2024-13-01': expected a date YYYY-MM-DD"),
    ("WEALTH_PARTITION_END", "2022-12-30", "WEALTH_PARTITION_END='2022-12-30': expected a date on or after WEALTH_PARTITION_START (2023-01-02)"),
    ("WEALTH_PROVIDER", "bogus", "WEALTH_PROVIDER='bogus': expected one of synthetic, vendor, http"),
    ("WEALTH_SYNTHETIC_SEED", "seven", "WEALTH_SYNTHETIC_SEED='seven': expected a whole number >= 0"),
    ("WEALTH_SYNTHETIC_UNIVERSE", "0", "WEALTH_SYNTHETIC_UNIVERSE='0': expected a whole number >= 1"),
    ("WEALTH_SYNTHETIC_LIFECYCLE", "maybe", "WEALTH_SYNTHETIC_LIFECYCLE='maybe': expected 1 or 0 (also true/false, yes/no, on/off)"),
    ("WEALTH_SYNTHETIC_LIFECYCLE", "2", "WEALTH_SYNTHETIC_LIFECYCLE='2': expected 1 or 0"),
    ("WEALTH_BACKFILL_CHUNK_SESSIONS", "-5", "WEALTH_BACKFILL_CHUNK_SESSIONS='-5': expected a whole number >= 0"),
    ("WEALTH_MODEL_RETRAIN_SESSIONS", "2.5", "WEALTH_MODEL_RETRAIN_SESSIONS='2.5': expected a whole number >= 1"),
    ("WEALTH_ALERT_WEBHOOK_URL", "hooks.example.com/x", "WEALTH_ALERT_WEBHOOK_URL='hooks.example.com/x': expected an http:// or https:// URL"),
    ("WEALTH_S3_ENDPOINT_URL", "ftp://minio:9000", "WEALTH_S3_ENDPOINT_URL='ftp://minio:9000': expected an http:// or https:// URL"),
    ("WEALTH_S3_REGION", "US East", "WEALTH_S3_REGION='US East': expected an AWS region name"),
    ("WEALTH_LAKEHOUSE_URI", "gs://bucket/lake", "WEALTH_LAKEHOUSE_URI='gs://bucket/lake': expected a local folder, file:///path or s3://bucket/prefix"),
    ("WEALTH_LANDING_URI", "s3://", "WEALTH_LANDING_URI='s3://': expected a local folder, file:///path or s3://bucket/prefix"),
    ("WEALTH_PG_HOST", "0.0.0.0", "WEALTH_PG_HOST='0.0.0.0': expected a loopback address"),
    ("WEALTH_PG_PORT", "70000", "WEALTH_PG_PORT='70000': expected a whole number >= 1 and <= 65535"),
    ("WEALTH_PG_BINDIR", "/nonexistent/bin", "WEALTH_PG_BINDIR='/nonexistent/bin': expected a folder holding initdb"),
    ("WEALTH_BACKUP_RETENTION", "7 days", "WEALTH_BACKUP_RETENTION='7 days': expected '<N>d,<M>w'"),
    ("WEALTH_BACKUP_MAX_AGE_HOURS", "0", "WEALTH_BACKUP_MAX_AGE_HOURS='0': expected a number > 0"),
    ("WEALTH_FRESHNESS_LAG_HOURS", "-1", "WEALTH_FRESHNESS_LAG_HOURS='-1': expected a number >= 0"),
    ("WEALTH_HTTP_BARS_URL", "alphavantage", "WEALTH_HTTP_BARS_URL='alphavantage': expected an http:// or https:// URL"),
    ("WEALTH_HTTP_FX_RATE_LIMIT", "fast", "WEALTH_HTTP_FX_RATE_LIMIT='fast': expected a number > 0"),
]


def _clean_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for name in list(os.environ):
        if name.startswith("WEALTH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WEALTH_HOME", str(home))


@pytest.mark.parametrize(("name", "value", "message"), BAD_VALUES, ids=[f"{n}={v}" for n, v, _ in BAD_VALUES])
def test_each_bad_variable_is_one_line_naming_it_and_what_is_valid(
    name: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    _clean_environment(monkeypatch, tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env()
    text = str(error.value)
    assert message in text
    assert "\n" not in text and text.startswith(name)
    assert isinstance(error.value, ValueError)
    assert "secret" not in text  # a URL's password is never repeated


def test_a_lakehouse_that_cannot_be_written_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clean_environment(monkeypatch, tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WEALTH_LAKEHOUSE_URI", str(blocker / "lakehouse"))
    with pytest.raises(ConfigurationError, match=r"^WEALTH_LAKEHOUSE_URI=.*a-file is a file; expected a folder"):
        Settings.from_env()
    if os.geteuid() != 0:  # root may write anywhere, so only a non-root user sees the permission case
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        monkeypatch.setenv("WEALTH_LAKEHOUSE_URI", str(locked / "lakehouse"))
        with pytest.raises(ConfigurationError, match="is not writable by this user"):
            Settings.from_env()


def test_http_provider_needs_its_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clean_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("WEALTH_PROVIDER", "http")
    with pytest.raises(ConfigurationError, match=r"^WEALTH_HTTP_BARS_API_KEY is not set: WEALTH_PROVIDER=http needs"):
        Settings.from_env()


def test_valid_values_are_read_with_their_types(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clean_environment(monkeypatch, tmp_path)
    for name, value in {"WEALTH_DATABASE_URL": "postgresql://wealth:pw@127.0.0.1:5433/warehouse",
                        "WEALTH_DAGSTER_DATABASE_URL": "postgresql+psycopg2://wealth@/dagster?host=/tmp",
                        "WEALTH_PARTITION_START": "2023-01-02", "WEALTH_PARTITION_END": "2024-12-31",
                        "WEALTH_PROVIDER": "vendor", "WEALTH_LAKEHOUSE_URI": "s3://bucket/lake",
                        "WEALTH_MODEL_RETRAIN_SESSIONS": "5", "WEALTH_BACKFILL_CHUNK_SESSIONS": "0",
                        "WEALTH_ALERT_WEBHOOK_URL": "https://hooks.example.com/x", "WEALTH_PG_HOST": "::1",
                        "WEALTH_S3_REGION": "ca-central-1"}.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert (settings.partition_start, settings.partition_end) == (dt.date(2023, 1, 2), dt.date(2024, 12, 31))
    assert (settings.provider, settings.lakehouse_uri, settings.model_retrain_sessions) == ("vendor", "s3://bucket/lake", 5)
    assert settings.backfill_chunk_sessions is None and settings.alert_webhook_url == "https://hooks.example.com/x"
    assert settings.landing_uri == str(tmp_path / "landing")


def test_a_configuration_error_in_a_run_fails_once_without_retries(tmp_path: Path) -> None:
    """A lakehouse root that is a file: the run fails at resource set-up with the variable's name; no step retry."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    attempts: list[int] = []

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=3))
    def needs_lake(lakehouse: LakehouseResource) -> None:
        attempts.append(1)

    result = dg.materialize([needs_lake], resources={"lakehouse": LakehouseResource(uri=str(blocker / "lake"))},
                            raise_on_error=False)
    assert not result.success and attempts == []
    kinds = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in kinds and "RESOURCE_INIT_FAILURE" in kinds
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    assert "WEALTH_LAKEHOUSE_URI=" in str(failure.event_specific_data.error.cause or failure.event_specific_data.error)


def test_resources_bind_each_set_variable_with_envvar_and_default_the_others(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The one configuration path: a set variable reaches Dagster as dg.EnvVar (resolved when a run starts)."""
    from wealth_pipeline.definitions import build_resources

    _clean_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("WEALTH_DATABASE_URL", "postgresql://u@127.0.0.1:5432/warehouse")
    monkeypatch.setenv("WEALTH_ALERT_WEBHOOK_URL", "https://hooks.example.com/x")
    monkeypatch.setenv("WEALTH_MODEL_RETRAIN_SESSIONS", "7")
    monkeypatch.setenv("WEALTH_HTTP_BARS_API_KEY", "k-123")
    resources = build_resources()
    assert isinstance(resources["alerts"].webhook_url, dg.EnvVar)
    assert resources["alerts"].webhook_url.env_var_name == "WEALTH_ALERT_WEBHOOK_URL"
    assert resources["model_retrain"].min_new_sessions.env_var_name == "WEALTH_MODEL_RETRAIN_SESSIONS"
    assert isinstance(resources["market_data"].http_bars_api_key, dg.EnvVar)
    # Unset: the embedded defaults, no EnvVar (an EnvVar of an unset variable fails every run).
    assert resources["lakehouse"].uri == str(tmp_path / "lakehouse") and not isinstance(resources["lakehouse"].uri, dg.EnvVar)
    assert resources["market_data"].provider == "synthetic" and resources["market_data"].http_fx_api_key is None
    # The values are resolved when a run starts: an asset sees them through the resources.
    seen: dict[str, object] = {}

    @dg.asset
    def reads(alerts: dg.ResourceParam[object], model_retrain: dg.ResourceParam[object], market_data: dg.ResourceParam[object]) -> None:
        seen.update(url=alerts.webhook_url, threshold=model_retrain.threshold(), http=market_data.http_environment())

    assert dg.materialize([reads], resources={k: resources[k] for k in ("alerts", "model_retrain", "market_data")}).success
    assert seen == {"url": "https://hooks.example.com/x", "threshold": 7, "http": {"WEALTH_HTTP_BARS_API_KEY": "k-123"}}


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("1", True), ("0", False), (" Off ", False), ("TRUE", True), ("no", False)])
def test_synthetic_lifecycle_variable_reaches_the_market(
    value: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """WEALTH_SYNTHETIC_LIFECYCLE (default on) decides whether the pipeline's synthetic market plants its events."""
    from wealth_pipeline.definitions import build_resources

    _clean_environment(monkeypatch, tmp_path)
    if value is not None:
        monkeypatch.setenv("WEALTH_SYNTHETIC_LIFECYCLE", value)
    assert Settings.from_env().synthetic_lifecycle is expected
    market = build_resources()["market_data"].get()
    assert market.lifecycle is expected
    # the default universe (50) holds every planted event; with the flag off it holds none
    events = market.lifecycle_events()
    assert (set(events["event"]) == {"ipo", "delisting", "ticker_change", "index_join", "index_leave"}) is expected
    assert events.is_empty() is not expected


def test_a_process_started_with_sigint_ignored_gets_its_handler_back() -> None:
    """Backgrounded by a non-interactive shell, SIGINT is ignored; Dagster would pass the ignore to
    SIGTERM around each run and then wait 30 s per compute-log tail (settings.restore_interrupt_handler)."""
    import signal
    import subprocess
    import sys

    probe = (
        "import signal; from wealth_pipeline.settings import restore_interrupt_handler as r; "
        "first = r(); print(first, r(), signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    )

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    backgrounded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                  preexec_fn=ignore_sigint, check=True)
    assert backgrounded.stdout.split() == ["True", "False", "True"]
    interactive = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert interactive.stdout.split() == ["False", "False", "True"]
