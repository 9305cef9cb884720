"""``wealth-pipeline`` end to end in this process: every bad input is one line on stderr and exit 2,
before any run starts; ``db`` options anywhere; ``db status`` on an external server; ``list``;
``db create-bi-user``; progress, log file and summary counted from a real run's Dagster events.

Real PostgreSQL (the session's server), real Dagster runs on an ephemeral instance; nothing mocked.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import socket
import sys
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import conninfo
from rich.console import Console

from wealth_pipeline import cli
from wealth_pipeline.cli_progress import NORMAL, VERBOSE, EventFollower
from wealth_pipeline.environment import with_database

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh WEALTH_HOME; the variables the CLI exports are restored after the test."""
    for name in (
        "DAGSTER_HOME",
        "WEALTH_DATABASE_URL",
        "WEALTH_DAGSTER_DATABASE_URL",
        "WEALTH_PARTITION_START",
        "WEALTH_BACKFILL_CHUNK_SESSIONS",
        "WEALTH_PROVIDER",
    ):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    monkeypatch.setenv("WEALTH_HOME", str(tmp_path / "home"))
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _out, err = _run(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err
    lines = [
        line
        for line in err.splitlines()
        if line.strip() and "Warning" not in line and "user_runtime_dir" not in line
    ]
    assert len(lines) == 1, err
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- partition keys, dates and ranges (checked before the database is touched) -----------------------
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ("materialize", "--partition", "2024-12-28"),
            "--partition 2024-12-28: a Saturday, not a trading session; the nearest session is 2024-12-27",
        ),
        (
            ("materialize", "--partition", "2024-12-25"),
            "--partition 2024-12-25: every listing exchange (NYSE, NASDAQ, TSX) is closed that day",
        ),
        (
            ("materialize", "--partition", "2022-12-30"),
            "--partition 2022-12-30: before the first partition 2023-01-02 (WEALTH_PARTITION_START)",
        ),
        (("materialize", "--partition", "2024-13-01"), "--partition '2024-13-01': not a calendar date"),
        (
            ("materialize", "--partition", "07/02/2024"),
            "--partition '07/02/2024': not a date; expected YYYY-MM-DD",
        ),
        (
            ("materialize", "--partition", "2024-07-05", "--end", "2024-07-01"),
            "--end 2024-07-01 is before --partition 2024-07-05: the range is reversed",
        ),
        (
            ("backfill", "--start", "2024-07-05", "--end", "2024-07-01"),
            "--end 2024-07-01 is before --start 2024-07-05: the range is reversed",
        ),
        (("backfill", "--start", "2024-07-01", "--end", "2024-07-06"), "--end 2024-07-06: a Saturday"),
        (("demo", "--start", "2023-1-2"), "--start '2023-1-2': not a date"),
        (
            ("demo", "--end", "2024-12-29"),
            "--end 2024-12-29: a Sunday, not a trading session; the nearest session is 2024-12-30",
        ),
    ],
)
def test_bad_partitions_are_one_line_and_exit_2(
    cli_env: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str
) -> None:
    line = _one_line_error(capsys, *argv)
    assert line.startswith(f"wealth-pipeline {argv[0]}: {expected}"), line
    assert not (cli_env / "home" / "pg").exists()  # refused before the database was started


def test_a_future_date_is_refused(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    future = dt.date.today() + dt.timedelta(days=400)
    future += dt.timedelta(days=(7 - future.weekday()) % 7)  # a Monday: only the date is wrong
    line = _one_line_error(capsys, "materialize", "--partition", future.isoformat())
    assert f"--partition {future}: in the future; the last partition is" in line


# --- selections ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("select", "expected"),
    [
        ("barz", "--select: unknown asset 'barz'; did you mean 'bars'?"),
        ("raw_bars indicatorz", "--select: unknown asset 'indicatorz'; did you mean 'indicators'?"),
        ("group:ingst", "--select: unknown group 'ingst'; did you mean 'ingest'? (groups: analytics, ingest"),
        (
            "group:processed or group:analitics",
            "--select: unknown group 'analitics'; did you mean 'analytics'?",
        ),
        ("colour:red", "--select: unknown selection attribute 'colour'"),
        ("bars+ and ((", "--select 'bars+ and ((': not a valid asset selection"),
    ],
)
def test_unknown_assets_and_groups_suggest_the_closest(
    cli_env: Path, capsys: pytest.CaptureFixture[str], select: str, expected: str
) -> None:
    line = _one_line_error(capsys, "materialize", "--partition", "2024-07-02", "--select", select)
    assert line.startswith(f"wealth-pipeline materialize: {expected}"), line


def test_backfill_selection_is_checked_too(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line_error(
        capsys, "backfill", "--start", "2024-07-01", "--end", "2024-07-05", "--select", "predictons"
    )
    assert "unknown asset 'predictons'; did you mean 'predictions'?" in line


# --- configuration ---------------------------------------------------------------------------------
def test_a_malformed_partition_start_names_the_variable(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEALTH_PARTITION_START", "01/02/2023")
    line = _one_line_error(capsys, "materialize", "--partition", "2024-07-02")
    assert "WEALTH_PARTITION_START" in line and "01/02/2023" in line


def test_a_bad_chunk_size_names_the_variable(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEALTH_BACKFILL_CHUNK_SESSIONS", "lots")
    line = _one_line_error(capsys, "backfill", "--start", "2024-07-01", "--end", "2024-07-05")
    assert "WEALTH_BACKFILL_CHUNK_SESSIONS='lots'" in line and ">= 0" in line


def test_a_database_url_that_is_not_a_url_names_the_variable(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEALTH_DATABASE_URL", "not-a-url")
    line = _one_line_error(capsys, "db", "url")
    assert "WEALTH_DATABASE_URL" in line and "postgresql://" in line


def test_an_unreachable_database_names_the_variable_and_hides_the_password(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    monkeypatch.setenv("WEALTH_DATABASE_URL", f"postgresql://someone:s3cret-pw@127.0.0.1:{port}/warehouse")
    line = _one_line_error(capsys, "materialize", "--partition", "2024-07-02", "--select", "raw_bars")
    assert line.startswith(
        f"wealth-pipeline materialize: WEALTH_DATABASE_URL: cannot connect to 127.0.0.1:{port}/warehouse"
    )
    assert "s3cret-pw" not in line


def test_a_wrong_password_names_the_variable(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    parts = conninfo.conninfo_to_dict(pg_url)
    url = f"postgresql://{parts['user']}:definitely-wrong@{parts['host']}:{parts['port']}/{parts['dbname']}"
    monkeypatch.setenv("WEALTH_DAGSTER_DATABASE_URL", url)
    line = _one_line_error(capsys, "db", "url")
    assert "WEALTH_DAGSTER_DATABASE_URL: cannot connect" in line and "definitely-wrong" not in line


def test_a_run_on_an_unmigrated_warehouse_is_refused(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    monkeypatch.setenv("WEALTH_DATABASE_URL", pg_url)
    monkeypatch.setenv("WEALTH_DAGSTER_DATABASE_URL", pg_url)
    line = _one_line_error(capsys, "materialize", "--partition", "2024-07-02", "--select", "raw_bars")
    assert "is at migration 0, the code needs" in line and "wealth-pipeline db upgrade" in line


# --- db ----------------------------------------------------------------------------------------------
def _external(monkeypatch: pytest.MonkeyPatch, pg_url: str) -> str:
    """The warehouse on the test server, Dagster storage in its ``postgres`` database (distinct URLs)."""
    dagster = with_database(pg_url, "postgres")
    monkeypatch.setenv("WEALTH_DATABASE_URL", pg_url)
    monkeypatch.setenv("WEALTH_DAGSTER_DATABASE_URL", dagster)
    return dagster


@pytest.mark.parametrize(
    "argv",
    [
        ("db", "url", "--database", "dagster"),
        ("db", "--database", "dagster", "url"),
        ("db", "url", "--database=dagster"),
    ],
)
def test_db_url_options_work_wherever_they_are_written(
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pg_url: str,
    argv: tuple[str, ...],
) -> None:
    dagster = _external(monkeypatch, pg_url)
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    assert out.strip() == dagster
    code, out, _ = _run(capsys, "db", "url")
    assert out.strip() == pg_url


def test_db_psql_takes_database_after_the_action(
    cli_env: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    _external(monkeypatch, pg_url)
    assert cli.main(["db", "psql", "--database", "dagster", "-tA", "-c", "SELECT current_database()"]) == 0
    assert capfd.readouterr().out.strip() == "postgres"
    assert cli.main(["db", "psql", "-tA", "-c", "SELECT current_database()"]) == 0
    assert capfd.readouterr().out.strip() == conninfo.conninfo_to_dict(pg_url)["dbname"]


def test_db_option_with_a_bad_value(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    _external(monkeypatch, pg_url)
    line = _one_line_error(capsys, "db", "url", "--database", "warehous")
    assert "--database 'warehous'; expected one of warehouse, dagster" in line


def test_db_status_checks_an_external_server(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    _external(monkeypatch, pg_url)
    code, out, err = _run(capsys, "db", "status")
    assert code == 0, err
    doc = json.loads(out)
    parts = conninfo.conninfo_to_dict(pg_url)
    assert doc["reachable"] is True and doc["variable"] == "WEALTH_DATABASE_URL"
    assert doc["server"] == f"{parts['host']}:{parts['port']}/{parts['dbname']}"
    with psycopg.connect(pg_url) as conn:
        assert doc["server_version"] == conn.execute("SHOW server_version").fetchone()[0]


def test_db_status_of_an_unreachable_external_server_fails(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    monkeypatch.setenv("WEALTH_DATABASE_URL", f"postgresql://u:p@127.0.0.1:{port}/warehouse")
    code, _out, err = _run(capsys, "db", "status")
    assert code != 0
    assert "WEALTH_DATABASE_URL: cannot connect to 127.0.0.1" in err and "Traceback" not in err


def test_db_create_bi_user_maps_a_login_that_can_connect(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    from wealth_pipeline.warehouse.roles import drop_bi_user

    _external(monkeypatch, pg_url)
    code, _out, err = _run(capsys, "db", "upgrade")
    assert code == 0, err
    login = f"bi_{uuid.uuid4().hex[:8]}"
    password = "a-long-bi-password"
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    try:
        code, out, err = _run(capsys, "db", "create-bi-user", "carol", login)
        assert code == 0, err
        assert f"BI login {login} created for user carol" in out
        with psycopg.connect(pg_url) as conn:
            assert conn.execute(
                "SELECT login_role FROM portfolio.users WHERE user_id = 'carol'"
            ).fetchone() == (login,)
        parts = conninfo.conninfo_to_dict(pg_url)
        as_bi = conninfo.make_conninfo(
            host=parts["host"], port=parts["port"], dbname=parts["dbname"], user=login, password=password
        )
        with psycopg.connect(as_bi) as conn:
            assert conn.execute("SELECT session_user").fetchone() == (login,)
    finally:
        drop_bi_user(pg_url, login)


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (("carol",), "a-long-password\n", "db create-bi-user: expected USER_ID LOGIN_ROLE, got carol"),
        (
            ("carol", "wealth_bi"),
            "a-long-password\n",
            "LOGIN_ROLE 'wealth_bi': login_role 'wealth_bi' is reserved",
        ),
        (("carol", "carol_bi"), "short\n", "the password (read from stdin) must have at least 8 characters"),
    ],
)
def test_db_create_bi_user_bad_inputs(
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pg_url: str,
    args: tuple[str, ...],
    stdin: str,
    expected: str,
) -> None:
    _external(monkeypatch, pg_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert expected in _one_line_error(capsys, "db", "create-bi-user", *args)


# --- Dagster's public API ---------------------------------------------------------------------------
# The one module allowed a private Dagster import, with its measured reason in its docstring and in
# ARCHITECTURE.md ("CLI runs"): the event-log table its batched planned-event insert writes.
PRIVATE_DAGSTER_ALLOWED = {"wealth_pipeline/instance_storage.py"}


def test_the_package_imports_no_private_dagster_module_but_the_documented_one() -> None:
    """The CLI's runs and backfills (``--no-wait`` too) go through Dagster's public API and GraphQL."""
    import ast

    from wealth_pipeline.environment import REPO_ROOT

    private = set()
    for path in sorted((REPO_ROOT / "wealth_pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else ([a.name for a in node.names] if isinstance(node, ast.Import) else [])
            )
            if any(name == "dagster._" or name.startswith("dagster._") for name in names):
                private.add(path.relative_to(REPO_ROOT).as_posix())
    assert private == PRIVATE_DAGSTER_ALLOWED


# --- list --------------------------------------------------------------------------------------------
def test_list_names_assets_groups_schedules_and_sensors(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wealth_pipeline.definitions import defs

    code, out, err = _run(capsys, "list", "--json")
    assert code == 0, err
    doc = json.loads(out)
    graph = defs.resolve_asset_graph()
    assert {a["asset"] for a in doc["assets"]} == {k.to_user_string() for k in graph.get_all_asset_keys()}
    bars = next(a for a in doc["assets"] if a["asset"] == "bars")
    assert bars["group"] == "processed" and bars["partitioned"] is True
    assert {"ingest", "processed", "analytics", "marts"} <= set(doc["groups"])
    assert "daily_after_close" in {s["name"] for s in doc["schedules"]}
    assert "run_failure_alert" in {s["name"] for s in doc["sensors"]}
    assert "daily_session" in doc["jobs"]
    code, out, _ = _run(capsys, "list")
    assert code == 0 and "daily_after_close" in out and "run_failure_alert" in out


# --- progress, log file and summary from a real run's events ----------------------------------------------
def _toy_definitions() -> dg.Definitions:
    """Two daily assets on the project's partitions: known rejected rows, one warning and one failed check."""
    from wealth_pipeline.defs.partitions import single_run, trading_sessions

    @dg.asset(
        partitions_def=trading_sessions,
        backfill_policy=single_run,
        check_specs=[
            dg.AssetCheckSpec("ok", asset="toy_source"),
            dg.AssetCheckSpec("warned", asset="toy_source"),
        ],
    )
    def toy_source(context):  # unannotated: a string annotation (future import) is refused by Dagster
        context.log.info("toy source read its window")
        print("raw tool output, as dbt streams it")
        yield dg.AssetCheckResult(check_name="ok", passed=True)
        yield dg.AssetCheckResult(check_name="warned", passed=False, severity=dg.AssetCheckSeverity.WARN)
        for n, key in enumerate(context.partition_keys, start=1):  # per-partition figures: 1, 2, 3
            yield dg.AssetMaterialization(
                asset_key="toy_source", partition=key, metadata={"rejected_rows": n}
            )
        yield dg.MaterializeResult(metadata={"rejected_rows": 0})

    @dg.asset(
        partitions_def=trading_sessions,
        backfill_policy=single_run,
        deps=[toy_source],
        check_specs=[dg.AssetCheckSpec("failed", asset="toy_sink")],
    )
    def toy_sink(context):
        context.log.debug("a debug line stays in the log file")
        yield dg.MaterializeResult(
            metadata={"rejected_rows": 4}
        )  # the window's figure, repeated per partition
        yield dg.AssetCheckResult(check_name="failed", passed=False)

    return dg.Definitions(assets=[toy_source, toy_sink])


def test_progress_log_file_and_summary_count_the_runs_events(tmp_path: Path) -> None:
    out = io.StringIO()
    log = tmp_path / "logs" / "run.log"
    follower = EventFollower(console=Console(file=out, width=200), log_path=log, verbosity=NORMAL)
    with dg.DagsterInstance.ephemeral() as instance:
        summary = cli.materialize_range(
            "2024-07-01",
            "2024-07-03",
            "toy_source toy_sink",
            definitions=_toy_definitions(),
            instance=instance,
            follower=follower,
        )
    follower.close()
    (stats,) = follower.runs
    assert summary["runs"][0]["success"] and stats.success
    assert (stats.steps_done, stats.total_steps, stats.partitions) == (2, 2, 3)
    assert (stats.checks_passed, stats.checks_warned, stats.checks_failed) == (1, 1, 1)
    # toy_source: 1+2+3 from its explicit materializations and 0 x 3 from its output; toy_sink: 4 once
    assert stats.rejected_rows() == 6 + 0 + 4
    printed = out.getvalue()
    assert "[sessions] materializing 2 assets over 3 partition(s)" in printed
    assert "toy source read its window" in printed
    assert "a debug line stays in the log file" not in printed and "ASSET_MATERIALIZATION" not in printed
    assert "raw tool output" not in printed
    assert "[sessions] steps 2/2" in printed  # not a terminal: one progress line per finished step
    text = log.read_text()
    assert "a debug line stays in the log file" in text
    assert "STDOUT   raw tool output, as dbt streams it" in text
    assert text.count("STEP_SUCCESS") == 2 and "ASSET_CHECK_EVALUATION" in text and stats.run_id[:8] in text
    tables = Console(file=io.StringIO(), width=200)
    for table in follower.summary_table([("market.toy", 12)]):
        tables.print(table)
    rendered = tables.file.getvalue()
    assert "1/1/1" in rendered and "market.toy" in rendered and "12" in rendered


def test_verbose_prints_every_event(tmp_path: Path) -> None:
    out = io.StringIO()
    follower = EventFollower(console=Console(file=out, width=200), verbosity=VERBOSE)
    with dg.DagsterInstance.ephemeral() as instance:
        cli.materialize_range(
            "2024-07-01",
            "2024-07-01",
            "toy_source",
            definitions=_toy_definitions(),
            instance=instance,
            follower=follower,
        )
    assert "ASSET_MATERIALIZATION" in out.getvalue() and "a debug line" not in out.getvalue()
    assert "raw tool output, as dbt streams it" in out.getvalue()


def test_a_failed_step_is_one_line_with_its_root_cause(tmp_path: Path) -> None:
    from wealth_pipeline.defs.partitions import single_run, trading_sessions

    @dg.asset(partitions_def=trading_sessions, backfill_policy=single_run)
    def toy_broken() -> None:
        raise RuntimeError("the toy vendor file is missing column close")

    out = io.StringIO()
    follower = EventFollower(console=Console(file=out, width=300), verbosity=NORMAL)
    with dg.DagsterInstance.ephemeral() as instance, pytest.raises(cli.RunFailed):
        cli.materialize_range(
            "2024-07-01",
            "2024-07-01",
            "toy_broken",
            definitions=dg.Definitions(assets=[toy_broken]),
            instance=instance,
            follower=follower,
        )
    assert (
        "[sessions] step toy_broken FAILED: RuntimeError: the toy vendor file is missing column close"
        in out.getvalue()
    )
    assert follower.runs[0].steps_failed == 1
