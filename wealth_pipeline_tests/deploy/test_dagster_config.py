"""The production Dagster instance variants in deploy/dagster/, loaded for real.

Each variant is copied into a temporary DAGSTER_HOME (as deploy/entrypoint.sh does) with its env vars
pointing at the test session's PostgreSQL server and, for the S3/ECS parts, the moto server on loopback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from psycopg.conninfo import conninfo_to_dict

from wealth_pipeline.environment import REPO_ROOT
from wealth_pipeline_tests.deploy._compose import DEPLOY

pytestmark = pytest.mark.integration

VARIANTS = {
    # variant: (run launcher class, compute log manager class)
    "local": ("DefaultRunLauncher", "LocalComputeLogManager"),
    "s3logs": ("DefaultRunLauncher", "S3ComputeLogManager"),
    "ecs": ("EcsRunLauncher", "S3ComputeLogManager"),
}


def _local_concurrency() -> dict:
    """The repository's (embedded default) dagster.yaml: the oracle of the tag-limit semantics."""
    return yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]


@pytest.fixture
def instance_env(monkeypatch: pytest.MonkeyPatch, pg_url: str, s3_endpoint_url: str) -> dict[str, str]:
    db = conninfo_to_dict(pg_url)
    values = {
        "DAGSTER_PG_HOST": db.get("host", "127.0.0.1"),
        "DAGSTER_PG_PORT": str(db.get("port", "5432")),
        "DAGSTER_PG_DB": db["dbname"],
        "DAGSTER_PG_USER": db["user"],
        "DAGSTER_PG_PASSWORD": db.get("password", ""),
        "WEALTH_COMPUTE_LOG_BUCKET": "compute-logs",
        "WEALTH_COMPUTE_LOG_PREFIX": "artifacts/dagster/compute-logs",
        "WEALTH_S3_REGION": "us-east-1",
        # boto3 reads these itself: how MinIO (compose) and moto (here) are reached without a config key.
        "AWS_ENDPOINT_URL": s3_endpoint_url,
        "AWS_ENDPOINT_URL_S3": s3_endpoint_url,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def _home(tmp_path: Path, variant: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "dagster" / f"{variant}.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _register_run_task_definition() -> str:
    ecs = boto3.client("ecs", region_name="us-east-1")
    arn = ecs.register_task_definition(
        family="wealth-dev-run",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="1024",
        memory="4096",
        containerDefinitions=[{"name": "run", "image": "wealth-pipeline:0.1.0", "essential": True}],
    )["taskDefinition"]["taskDefinitionArn"]
    return arn


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_passes_the_instance_config_schema(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _home(tmp_path, variant, monkeypatch)
    config, custom_instance_class = dagster_instance_config(str(home))
    assert custom_instance_class is None
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        assert config[storage]["config"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert config["event_log_storage"]["class"] == "BatchedPostgresEventLogStorage"
    assert config["concurrency"]["runs"] == _local_concurrency()
    launcher, logs = VARIANTS[variant]
    assert config["run_launcher"]["class"] == launcher
    assert config["compute_logs"]["class"] == logs


def test_a_broken_variant_is_refused_by_the_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The schema check above can fail: a misspelt section or a wrong type is rejected."""
    home = _home(tmp_path, "local", monkeypatch)
    text = (home / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(text.replace("max_concurrent_runs: 4", "max_concurrent_runs: four"))
    with pytest.raises(Exception, match="max_concurrent_runs"):
        dagster_instance_config(str(home))
    (home / "dagster.yaml").write_text(text.replace("compute_logs:", "compute_log:"))
    with pytest.raises(Exception, match="compute_log"):
        dagster_instance_config(str(home))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_loads_against_real_postgres(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance_env: dict[str, str], s3_endpoint_url: str
) -> None:
    home = _home(tmp_path, variant, monkeypatch)
    if variant == "ecs":
        task_definition = _register_run_task_definition()
        monkeypatch.setenv("WEALTH_ECS_RUN_TASK_DEFINITION", task_definition)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "BatchedPostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.get_runs() == []  # the schema was created in the test database

        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        expected = _local_concurrency()
        settings = instance.get_concurrency_config().run_queue_config
        assert settings.max_concurrent_runs == expected["max_concurrent_runs"] == 4
        limits = settings.tag_concurrency_limits
        assert limits == expected["tag_concurrency_limits"]
        assert limits == [{"key": "wealth/warehouse", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]

        launcher_class, logs_class = VARIANTS[variant]
        assert type(instance.run_launcher).__name__ == launcher_class
        manager = instance.compute_log_manager
        assert type(manager).__name__ == logs_class
        if logs_class == "S3ComputeLogManager":
            assert manager._s3_bucket == "compute-logs"
            assert manager._s3_prefix == "artifacts/dagster/compute-logs"
            # No endpoint in the YAML: boto3's AWS_ENDPOINT_URL_S3 routes it (MinIO in compose).
            assert manager._s3_session.meta.endpoint_url == s3_endpoint_url
        else:
            assert Path(manager._base_dir) == Path("/opt/dagster/compute_logs")
        if variant == "ecs":
            launcher = instance.run_launcher
            assert launcher.task_definition == task_definition  # resolved through ECS DescribeTaskDefinition
            assert launcher.container_name == "run"
            assert launcher.secrets_tags == []  # secrets come from the task definition, not ListSecrets
            assert launcher.use_current_ecs_task_config is True


def test_ecs_variant_needs_its_task_definition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance_env: dict[str, str]
) -> None:
    home = _home(tmp_path, "ecs", monkeypatch)
    monkeypatch.delenv("WEALTH_ECS_RUN_TASK_DEFINITION", raising=False)
    # The launcher is built on first use.
    with dg.DagsterInstance.from_config(str(home)) as instance, pytest.raises(
        Exception, match="WEALTH_ECS_RUN_TASK_DEFINITION"
    ):
        _ = instance.run_launcher


def test_s3_compute_logs_reach_the_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance_env: dict[str, str], s3_endpoint_url: str
) -> None:
    """A run's compute logs land under the configured bucket/prefix (moto standing in for S3/MinIO)."""
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=s3_endpoint_url)
    s3.create_bucket(Bucket="compute-logs")
    home = _home(tmp_path, "s3logs", monkeypatch)

    @dg.op
    def shout() -> None:
        print("hello from the op")  # stdout is what compute logs capture

    @dg.job
    def shouting() -> None:
        shout()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = shouting.execute_in_process(instance=instance)
        assert result.success
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="compute-logs").get("Contents", [])]
    assert keys and all(k.startswith("artifacts/dagster/compute-logs/") for k in keys), keys
    bodies = [s3.get_object(Bucket="compute-logs", Key=k)["Body"].read().decode() for k in keys if k.endswith(".out")]
    assert any("hello from the op" in body for body in bodies), json.dumps(keys)
