"""docker-compose.yml, .env.example and deploy/ scripts: what can be checked without a Docker engine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from wealth_pipeline.settings import ENVIRONMENT, Settings
from wealth_pipeline_tests.deploy._compose import (
    COMPOSE_FILE,
    DEPLOY,
    DOCKERFILE,
    MissingVariable,
    interpolate,
    load_compose,
    read_env_file,
    referenced_variables,
    service_environment,
)

EXPECTED_SERVICES = {"timescaledb", "minio", "minio-init", "migrate", "code-location", "webserver", "daemon"}
DAGSTER_SERVICES = ("code-location", "webserver", "daemon")
# Read only by the embedded local cluster (never started in a container) or set by the image itself.
# The local cluster helper's settings, and the export command's password (read in the shell of the
# person exporting, never given to a service).
NOT_FOR_CONTAINERS = {"WEALTH_PG_BINDIR", "WEALTH_PG_HOST", "WEALTH_PG_PORT", "WEALTH_EXPORT_PASSWORD"}
SET_BY_IMAGE = {"WEALTH_HOME"}
# Set by marts_dbt for its own dbt process (the run's window), never by a deployment.
SET_BY_THE_PIPELINE = {"WEALTH_DBT_START_DATE", "WEALTH_DBT_END_DATE"}
PASSWORDS = {"WEALTH_OWNER_PASSWORD", "WEALTH_LOADER_PASSWORD", "WEALTH_BI_PASSWORD"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|ACCESS_KEY|TOKEN", re.I)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file()


@pytest.fixture(scope="module")
def resolved(compose: dict, env_example: dict[str, str]) -> dict:
    """The compose file as `docker compose config` would see it with .env copied from .env.example."""
    return interpolate(compose, env_example)


def test_compose_has_the_expected_services(compose: dict) -> None:
    assert set(compose["services"]) == EXPECTED_SERVICES
    assert compose["services"]["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert compose["services"]["code-location"]["command"] == [
        "dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "wealth_pipeline.definitions",
    ]
    assert compose["services"]["webserver"]["command"][0] == "dagster-webserver"
    assert compose["services"]["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    assert set(compose["volumes"]) >= {"timescale_data", "minio_data"}
    assert "timescale_data:/var/lib/postgresql/data" in compose["services"]["timescaledb"]["volumes"]


def test_timescaledb_is_postgres_15_or_newer_with_a_pinned_version(compose: dict) -> None:
    tag = compose["services"]["timescaledb"]["image"].split(":", 1)[1]
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)-pg(\d+)", tag)
    assert match, f"timescaledb tag {tag!r} is not a pinned <version>-pg<major> tag"
    assert int(match.group(4)) >= 15


def test_every_service_has_a_healthcheck_or_a_documented_reason(compose: dict) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck") or {}
        if check and not check.get("disable"):
            assert check["test"], name
            continue
        reason = service.get("x-healthcheck-reason", "")
        assert len(reason) > 20, f"service {name} has no healthcheck and no x-healthcheck-reason"


def test_depends_on_uses_conditions_that_can_be_met(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                check = services[target].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{name} waits for {target}'s health"
            else:
                assert condition == "service_completed_successfully", (name, target, condition)
                assert services[target].get("restart") == "no", f"{target} is one-shot"
    code = services["code-location"]["depends_on"]
    assert code["migrate"]["condition"] == "service_completed_successfully"
    assert code["minio-init"]["condition"] == "service_completed_successfully"
    assert code["timescaledb"]["condition"] == "service_healthy"
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["code-location"]["condition"] == "service_healthy"


def test_env_example_defines_every_interpolated_variable(compose: dict, env_example: dict[str, str]) -> None:
    referenced = referenced_variables(compose)
    assert referenced, "the compose file takes its configuration from .env"
    missing = referenced - set(env_example)
    assert not missing, f".env.example lacks {sorted(missing)}"
    unused = set(env_example) - referenced
    assert not unused, f".env.example defines variables the compose file never reads: {sorted(unused)}"


def test_passwords_are_required_interpolations(compose: dict, env_example: dict[str, str]) -> None:
    text = COMPOSE_FILE.read_text()
    secrets = {name for name in referenced_variables(compose) if SECRET_NAME.search(name)}
    assert secrets >= {"POSTGRES_PASSWORD", "DAGSTER_PG_PASSWORD", "MINIO_ROOT_PASSWORD", "WEALTH_LOADER_PASSWORD",
                       "WEALTH_BI_PASSWORD", "WEALTH_S3_SECRET_KEY"}
    optional_api_keys = {"WEALTH_HTTP_BARS_API_KEY", "WEALTH_HTTP_FX_API_KEY"}  # only with WEALTH_PROVIDER=http
    for name in secrets - optional_api_keys:
        uses = re.findall(r"(?<!\$)\$\{" + name + r"(:?[-?]?)", text)
        assert uses and all(op == ":?" for op in uses), f"{name} must always be ${{{name}:?}}, found {uses}"
        without = {k: v for k, v in env_example.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            interpolate(compose, without)
        with pytest.raises(MissingVariable, match=name):
            interpolate(compose, {**env_example, name: ""})
    # The example holds placeholders, never something that looks like a real secret.
    for name in secrets:
        value = env_example[name]
        assert value == "" or value.startswith("change-me") or name.endswith("ACCESS_KEY"), (name, value)


def test_no_secret_literals_in_the_compose_file(compose: dict) -> None:
    for name, service in compose["services"].items():
        for key, value in service_environment(service).items():
            text = "" if value is None else str(value)
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]*|:-)?\}", text), f"{name}.{key} is a literal: {text!r}"
            # Credentials inside URLs are interpolated as well.
            masked = re.sub(r"\$\{[^}]*\}", "<interpolated>", text)
            for userinfo in re.findall(r"://([^@/\s]+)@", masked):
                _user, _, password = userinfo.partition(":")
                assert password == "<interpolated>", f"{name}.{key} embeds a password literal: {text!r}"
    without_interpolations = re.sub(r"\$?\$\{[^}]*\}", "", COMPOSE_FILE.read_text())
    literal = re.search(r"(?i)(password|secret|api_key)[A-Z_]*[ \t]*[:=][ \t]*['\"]?[^\s'\"]{4,}", without_interpolations)
    assert literal is None, f"secret-looking literal in docker-compose.yml: {literal.group(0) if literal else ''}"


def test_images_are_pinned(resolved: dict) -> None:
    for name, service in resolved["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"
    built = {name for name, s in resolved["services"].items() if "build" in s}
    assert built == {"migrate", "code-location", "webserver", "daemon"}
    assert len({resolved["services"][n]["image"] for n in built}) == 1, "one project image for every code service"


def test_published_ports_bind_to_loopback(resolved: dict) -> None:
    published = []
    for name, service in resolved["services"].items():
        for port in service.get("ports") or []:
            assert isinstance(port, str), f"{name}: use the string form with an explicit host IP"
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
            published.append((name, port.split(":")[-1]))
    assert ("webserver", "3000") in published and ("timescaledb", "5432") in published
    assert all(name != "code-location" for name, _ in published), "the gRPC server stays internal"


def test_code_services_get_every_setting_the_code_reads(resolved: dict) -> None:
    production = set(ENVIRONMENT) - NOT_FOR_CONTAINERS - SET_BY_IMAGE - SET_BY_THE_PIPELINE
    runtime = DOCKERFILE.read_text().split("AS runtime")[1].replace("\\\n", " ")
    assert any(line.startswith("ENV ") and " WEALTH_HOME=/" in line for line in runtime.splitlines())
    migrate = service_environment(resolved["services"]["migrate"])
    code = service_environment(resolved["services"]["code-location"])
    assert production <= set(migrate), sorted(production - set(migrate))
    # The code location connects as wealth_loader (its password is in the URL); only the migration
    # sets login passwords, so the BI password never reaches the process running assets.
    assert production - PASSWORDS <= set(code), sorted(production - PASSWORDS - set(code))
    assert not PASSWORDS & set(code)

    url = conninfo_to_dict(code["WEALTH_DATABASE_URL"])
    assert (url["user"], url["host"], url["port"], url["dbname"]) == ("wealth_loader", "timescaledb", "5432", "warehouse")
    assert url["password"] == migrate["WEALTH_LOADER_PASSWORD"] == "change-me-loader"
    admin = conninfo_to_dict(migrate["WEALTH_DATABASE_URL"])
    assert (admin["user"], admin["dbname"], admin["password"]) == ("postgres", "warehouse", "change-me-postgres")

    # The settings the code derives from that environment (Settings.from_env as the oracle of meaning).
    env = {k: str(v) for k, v in code.items()}
    old = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        settings = Settings.from_env()
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert settings.lakehouse_uri == "s3://wealth-data"
    assert settings.landing_uri == "s3://wealth-data/landing"
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_region == "us-east-1"
    assert settings.provider == "synthetic"
    assert settings.dagster_database_url == "postgresql+psycopg2://dagster:change-me-dagster@timescaledb:5432/dagster"


def _instance_variables() -> set[str]:
    names: set[str] = set()
    for path in (DEPLOY / "dagster").glob("*.yaml"):
        names |= set(re.findall(r"env:\s*([A-Z0-9_]+)", path.read_text()))
    return names


def test_dagster_services_get_the_instance_configuration(resolved: dict) -> None:
    needed = _instance_variables() - {"WEALTH_ECS_RUN_TASK_DEFINITION"}  # the ECS variant only
    workspace = (DEPLOY / "workspace.yaml").read_text()
    needed |= set(re.findall(r"env:\s*([A-Z0-9_]+)", workspace))
    assert {"DAGSTER_PG_PASSWORD", "WEALTH_COMPUTE_LOG_BUCKET", "WEALTH_CODE_LOCATION_HOST"} <= needed
    for name in DAGSTER_SERVICES:
        env = service_environment(resolved["services"][name])
        assert needed <= set(env), (name, sorted(needed - set(env)))
        assert env["WEALTH_CODE_LOCATION_HOST"] == "code-location"
        assert env["WEALTH_DAGSTER_RUN_LAUNCHER"] == "local"
        assert env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
        assert "compute_logs:/opt/dagster/compute_logs" in resolved["services"][name]["volumes"]
    # The database Dagster's storage uses is the one the TimescaleDB init script creates.
    tsdb = service_environment(resolved["services"]["timescaledb"])
    web = service_environment(resolved["services"]["webserver"])
    for key in ("DAGSTER_PG_DB", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"):
        assert tsdb[key] == web[key]


def test_minio_init_creates_the_data_bucket(resolved: dict) -> None:
    init = resolved["services"]["minio-init"]
    script = init["command"][0]
    assert 'mc mb --ignore-existing "local/${WEALTH_BUCKET}"' in script
    assert service_environment(init)["WEALTH_BUCKET"] == "wealth-data"
    code = service_environment(resolved["services"]["code-location"])
    assert code["WEALTH_LAKEHOUSE_URI"] == "s3://" + service_environment(init)["WEALTH_BUCKET"]
    # The pipeline's key is a MinIO user limited to that bucket, not the root user.
    assert code["AWS_ACCESS_KEY_ID"] == service_environment(init)["WEALTH_S3_ACCESS_KEY"]
    assert code["AWS_ACCESS_KEY_ID"] != service_environment(resolved["services"]["minio"])["MINIO_ROOT_USER"]


# ---- deploy/entrypoint.sh: the instance variant chosen from the environment ------------------------
def _entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    return subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "sh", "-c", "echo started"],
        env={"PATH": os.environ["PATH"], "DAGSTER_HOME": str(home),
             "WEALTH_DAGSTER_VARIANTS_DIR": str(DEPLOY / "dagster"), **env},
        capture_output=True, text=True, check=False,
    )


@pytest.mark.parametrize(
    ("env", "variant"),
    [
        ({}, "local"),
        ({"WEALTH_DAGSTER_RUN_LAUNCHER": "local", "WEALTH_COMPUTE_LOG_BUCKET": ""}, "local"),
        ({"WEALTH_COMPUTE_LOG_BUCKET": "logs"}, "s3logs"),
        ({"WEALTH_DAGSTER_RUN_LAUNCHER": "ecs", "WEALTH_COMPUTE_LOG_BUCKET": "logs"}, "ecs"),
    ],
)
def test_entrypoint_selects_the_instance_variant(tmp_path: Path, env: dict[str, str], variant: str) -> None:
    result = _entrypoint(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"
    written = (tmp_path / "home" / "dagster.yaml").read_text()
    assert written == (DEPLOY / "dagster" / f"{variant}.yaml").read_text()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEALTH_DAGSTER_RUN_LAUNCHER": "ecs"}, "needs WEALTH_COMPUTE_LOG_BUCKET"),
        ({"WEALTH_DAGSTER_RUN_LAUNCHER": "k8s"}, "is not one of: local, ecs"),
    ],
)
def test_entrypoint_refuses_impossible_variants(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = _entrypoint(tmp_path, **env)
    assert result.returncode == 64
    assert message in result.stderr
    assert "started" not in result.stdout
    assert not (tmp_path / "home" / "dagster.yaml").exists()


def test_entrypoint_keeps_a_mounted_instance_file_on_request(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result = _entrypoint(tmp_path, WEALTH_DAGSTER_INSTANCE="keep", WEALTH_COMPUTE_LOG_BUCKET="logs")
    assert result.returncode == 0, result.stderr
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


# ---- deploy/timescaledb: the first-start script creating Dagster's role and database ---------------
@pytest.mark.integration
def test_timescaledb_init_script_creates_dagster_role_and_database(pg_server_url: str) -> None:
    psql_dir = None
    for candidate in (shutil.which("psql"),):
        if candidate:
            psql_dir = str(Path(candidate).parent)
    if psql_dir is None:
        from wealth_pipeline.warehouse.localpg import find_pg_bindir

        psql_dir = str(find_pg_bindir())
    server = conninfo_to_dict(pg_server_url)
    suffix = uuid.uuid4().hex[:8]
    role, database, password = f"dagster_{suffix}", f"dagster_db_{suffix}", f"pw-{suffix}"
    env = {
        "PATH": f"{psql_dir}:{os.environ['PATH']}",
        "POSTGRES_USER": server["user"],
        "PGHOST": server.get("host", "127.0.0.1"),
        "PGPORT": str(server.get("port", "5432")),
        "PGPASSWORD": server.get("password", ""),
        "DAGSTER_PG_USER": role,
        "DAGSTER_PG_PASSWORD": password,
        "DAGSTER_PG_DB": database,
    }
    script = DEPLOY / "timescaledb" / "10-dagster-database.sh"
    try:
        for _ in range(2):  # idempotent: a second run changes nothing and does not fail
            result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=False)
            assert result.returncode == 0, result.stderr
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            assert owner == (role,)
            login = conn.execute("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            assert login == (True, False)
            public = conn.execute(
                "SELECT has_database_privilege('public', %s, 'CONNECT'), has_database_privilege('public', %s, 'TEMP')",
                (database, database)).fetchone()
            assert public == (False, False)  # no PUBLIC CONNECT/TEMP: a BI login cannot reach Dagster's storage
        missing = subprocess.run(["sh", str(script)], env={**env, "DAGSTER_PG_PASSWORD": ""},
                                 capture_output=True, text=True, check=False)
        assert missing.returncode != 0 and "DAGSTER_PG_PASSWORD" in missing.stderr
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
