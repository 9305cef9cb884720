"""dbt marts through dagster-dbt: real `dbt build` runs against a migrated database, on both flavours.

Market and analytics data come from the pipeline itself (ingest -> processed -> analytics, then the
dbt assets, in one single-run materialization over the window); portfolio and model rows are
inserted contract-shaped as the owner, so the marts are tested independently of those domains. The
marts warehouse is built once per flavour for the whole session (plain PostgreSQL, then TimescaleDB:
the module-scoped counterpart of the ``flavoured_db`` fixture) and shared with test_bi_reads, which
only reads it; a test here that changes it puts it back. Tests that need a fresh warehouse use
``flavoured_db``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml
from dagster.components import load_defs
from psycopg import sql

from wealth_pipeline.cli import materialize_range
from wealth_pipeline.core import identifiers
from wealth_pipeline.definitions import build_definitions
from wealth_pipeline.defs.marts.__main__ import dbt_cli_env
from wealth_pipeline.defs.marts.project import DBT_PROJECT_DIR, dbt_executable
from wealth_pipeline.environment import REPO_ROOT, with_database
from wealth_pipeline.warehouse import migrate
from wealth_pipeline_tests.conftest import keep_for_session
from wealth_pipeline_tests.integration.test_market_pipeline import Pipeline

pytestmark = pytest.mark.integration

START, END = "2024-06-03", "2024-06-28"
DOMAINS = ("ingest", "processed", "analytics", "marts")
MARTS = "group:marts"
MODEL_ID = "xgb-test-0001"
# user -> (login suffix, portfolio, base currency); BI logins are created by test_bi_reads.
PORTFOLIOS = {"alice": ("p_alice", "CAD"), "bob": ("p_bob", "USD")}
SESSIONS = [dt.date(2024, 6, 24), dt.date(2024, 6, 25), dt.date(2024, 6, 26), dt.date(2024, 6, 27), dt.date(2024, 6, 28)]
EXPOSURE_DATE = dt.date(2024, 5, 31)  # before the window: every bar of the window shows it (as of)
# The stable ids the symbol master gives the seeded symbols (marts join facts on security_id, issue 21).
SECURITY_IDS = {s: identifiers.security_id(identifiers.origin_key(isin, mic, s)) for s, isin, mic in (
    ("AAPL", "US0378331005", "XNAS"), ("MSFT", "US5949181045", "XNAS"), ("GOOGL", "US02079K3059", "XNAS"))}


class MartsPipeline(Pipeline):
    """The pipeline harness with the marts domain: ingest, processed, analytics and dbt."""

    runs: list[dict[str, Any]]

    def definitions(self) -> dg.Definitions:
        """The four domains' folders, loaded as ``dg.load_from_defs_folder`` loads them, with this harness's resources."""
        loaded = [load_defs(importlib.import_module(f"wealth_pipeline.defs.{d}"), project_root=REPO_ROOT) for d in DOMAINS]
        # each folder's Definitions carries its own component tree, which merge refuses twice: keep the objects
        found = [dg.Definitions(assets=d.assets, asset_checks=d.asset_checks, jobs=d.jobs, resources=d.resources)
                 for d in loaded]
        return dg.Definitions.merge(*found, dg.Definitions(resources=self.resources()))

    def run(self, start: str, end: str | None = None, selection: str = "*", raise_on_error: bool = True, **market: Any) -> list[dict[str, Any]]:
        summary = materialize_range(start, end or start, selection, progress=False, definitions=self.definitions(),
                                    instance=self.instance, raise_on_error=raise_on_error)
        return summary["runs"]

    def execute(self, statement: str, params: tuple | list = ()) -> None:
        with psycopg.connect(self.warehouse_url) as conn:
            conn.execute(statement, params)


def seed_portfolios_and_models(p: MartsPipeline) -> None:
    """Contract-shaped portfolio rows (two owners) and one model's predictions, written as the owner."""
    with psycopg.connect(p.warehouse_url) as conn:
        for user, (portfolio, currency) in PORTFOLIOS.items():
            conn.execute("INSERT INTO portfolio.users (user_id, display_name) VALUES (%s, %s)", (user, user.title()))
            conn.execute("INSERT INTO portfolio.portfolios (portfolio_id, owner_id, name, base_currency, benchmark) "
                         "VALUES (%s, %s, %s, %s, 'SYNTH500')", (portfolio, user, f"{user} growth", currency))
            scale = 1.0 if user == "alice" else 2.0
            for i, day in enumerate(SESSIONS):
                value = scale * (100_000.0 + 1_000.0 * i)
                conn.execute("INSERT INTO portfolio.valuations VALUES (%s, %s, %s, %s, %s, %s, %s)",
                             (portfolio, day, currency, value - 5_000.0, 5_000.0, value, 0.0))
                conn.execute("INSERT INTO portfolio.portfolio_metrics VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                             (portfolio, day, 0.01 * scale, 0.02 * (i + 1), 0.05, 0.12, 0.13, 0.15, 1.1, -0.08 * scale, 0.9))
                conn.execute("INSERT INTO portfolio.currency_attribution VALUES (%s, %s, '__portfolio__', %s, %s, %s, %s), "
                             "(%s, %s, 'AAPL', 0.5, 0.5, 0.5, 0.5)",
                             (portfolio, day, 0.006, 0.004, 0.0001, 0.0101, portfolio, day))
        conn.execute(
            "INSERT INTO models.model_registry (model_id, trained_at, train_start, train_end, label_horizon, features, "
            "params, metrics, oos_ic, oos_rank_ic, oos_icir, oos_hit_rate, booster_uri, manifest_uri, data_snapshot) "
            "VALUES (%s, now(), '2023-01-02', '2024-04-30', 5, ARRAY['rsi_14'], '{}', '{}', 0.05, 0.06, 0.4, 0.53, "
            "'file:///b', 'file:///m', '{}')", (MODEL_ID,))
        for day, scores in ((SESSIONS[-2], {"AAPL": 0.9, "MSFT": 0.1}), (SESSIONS[-1], {"AAPL": 0.2, "MSFT": 0.7, "GOOGL": 0.4})):
            ranked = sorted(scores, key=scores.get, reverse=True)
            for symbol, score in scores.items():
                conn.execute("INSERT INTO models.predictions VALUES (%s, %s, %s, %s, %s, %s)",
                             (symbol, day, MODEL_ID, score, ranked.index(symbol) + 1, SECURITY_IDS[symbol]))


_SHARED_WAREHOUSES: dict[str, MartsPipeline] = {}


def build_marts_warehouse(pg_server_url: str, folder: Path) -> MartsPipeline:
    """The session's marts warehouse on ``pg_server_url``: built on the first call (lake in ``folder``),
    the same one afterwards, dropped when the server's session fixture ends.

    The build (the pipeline over the window, then dbt) is the costly part of the marts tests and
    test_bi_reads only reads what it builds, so both modules share one per flavour.
    """
    if pg_server_url not in _SHARED_WAREHOUSES:
        _SHARED_WAREHOUSES[pg_server_url] = _build_marts_warehouse(pg_server_url, folder)
    return _SHARED_WAREHOUSES[pg_server_url]


def _build_marts_warehouse(pg_server_url: str, folder: Path) -> MartsPipeline:
    """A migrated database with the window's market data, portfolio and model rows, and the marts built."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    keep_for_session(pg_server_url, name)
    url = with_database(pg_server_url, name)
    migrate.upgrade(url)
    pipeline = MartsPipeline(url, str(folder / "lake"), None)
    seed_portfolios_and_models(pipeline)
    # Exposures need ~6 months of history the short window does not have: one known row, before it.
    pipeline.execute("INSERT INTO analytics.factor_exposures (symbol, session_date, alpha, beta_market, beta_size, "
                     "beta_value, beta_momentum, r_squared, residual_vol, n_obs, security_id) "
                     "VALUES ('AAPL', %s, 0.0001, 1.234, -0.2, 0.3, 0.1, 0.55, 0.18, 252, %s)",
                     (EXPOSURE_DATE, SECURITY_IDS["AAPL"]))
    pipeline.runs = pipeline.run(START, END)
    assert all(r["success"] for r in pipeline.runs)
    return pipeline


def check_results(run: dict[str, Any]) -> dict[tuple[str, str], bool]:
    """(asset, check name) -> passed, for every asset check evaluated in the run."""
    return {(e.asset_key.to_user_string(), e.check_name): e.passed for e in run["result"].get_asset_check_evaluations()}


@pytest.fixture(scope="module", params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def marts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> MartsPipeline:
    """The session's marts warehouse, on the plain server, then on the TimescaleDB server."""
    server = request.getfixturevalue("pg_server_url" if request.param == "postgres" else "timescale_server_url")
    return build_marts_warehouse(server, tmp_path_factory.mktemp(f"marts-{request.param}"))


def test_the_pipeline_builds_every_mart_and_its_dbt_tests_pass(marts: MartsPipeline) -> None:
    run = marts.runs[-1]  # the partitioned stage: ingest -> processed -> analytics -> dbt, one run
    assert run["stage"] == "sessions"
    results = check_results(run)
    assert results and all(results.values()), {k: v for k, v in results.items() if not v}
    # Every dbt test on a model ran as an asset check (and passed, above); the two on the symbol
    # master source are no asset checks, but a failing one would have failed the run's dbt build.
    from wealth_pipeline.defs.marts.assets import marts_dbt

    dbt_checks = {(k.asset_key.to_user_string(), k.name) for k in marts_dbt.check_keys}
    assert len(dbt_checks) > 40 and dbt_checks <= set(results), dbt_checks - set(results)
    for asset in ("marts/security_daily", "marts/portfolio_performance", "marts/model_signals"):
        assert any(a == asset for a, _ in results), f"{asset} has dbt tests as asset checks"
    assert ("marts/portfolio_performance", "assert_portfolio_marts_enforce_rls") in results
    materialized = {e.asset_key.to_user_string() for e in run["result"].get_asset_materialization_events()}
    assert {"marts/security_daily", "marts/portfolio_performance", "marts/model_signals", "staging/stg_bars_daily"} <= materialized

    # security_daily: one row per bar of the window, equal to the bar joined with its indicators.
    expected = marts.query(
        "SELECT b.symbol, b.session_date, b.close, b.adj_close, b.volume, i.rsi_14, i.sma_20 "
        "FROM market.bars_daily b LEFT JOIN analytics.indicators_daily i USING (symbol, session_date) ORDER BY 1, 2")
    got = marts.query("SELECT symbol, session_date, close, adj_close, volume, rsi_14, sma_20 FROM marts.security_daily ORDER BY 1, 2")
    assert len(got) > 12 * 15 and got == expected
    # Latest estimated exposures as of each session: the one row known, dated before the window.
    aapl = marts.query("SELECT DISTINCT exposure_date, beta_market FROM marts.security_daily WHERE symbol = 'AAPL'")
    assert aapl == [(EXPOSURE_DATE, 1.234)]
    assert marts.query("SELECT count(*) FROM marts.security_daily WHERE symbol <> 'AAPL' AND exposure_date IS NOT NULL") == [(0,)]

    # portfolio_performance: valuations + metrics + the '__portfolio__' attribution row, per session.
    rows = marts.query("SELECT portfolio_id, session_date, total_value_base, cumulative_twr, max_drawdown, "
                       "attribution_local_return, attribution_fx_return, attribution_base_return "
                       "FROM marts.portfolio_performance ORDER BY 1, 2")
    assert len(rows) == 10
    assert rows[0] == ("p_alice", SESSIONS[0], 100_000.0, 0.02, -0.08, 0.006, 0.004, 0.0101)
    assert rows[-1] == ("p_bob", SESSIONS[-1], 208_000.0, 0.1, -0.16, 0.006, 0.004, 0.0101)

    # model_signals: the latest session's predictions only, ranked, with the model id.
    signals = marts.query("SELECT symbol, session_date, model_id, score, rank FROM marts.model_signals ORDER BY rank")
    assert signals == [("MSFT", SESSIONS[-1], MODEL_ID, 0.7, 1), ("GOOGL", SESSIONS[-1], MODEL_ID, 0.4, 2),
                       ("AAPL", SESSIONS[-1], MODEL_ID, 0.2, 3)]


def test_a_partition_window_deletes_and_inserts_only_that_window(marts: MartsPipeline) -> None:
    inside, outside = dt.date(2024, 6, 13), dt.date(2024, 6, 3)
    gone = dt.date(2024, 6, 14)
    before = dict(marts.query("SELECT session_date, close FROM marts.security_daily WHERE symbol = 'MSFT'"))
    whole = marts.query("SELECT * FROM marts.security_daily ORDER BY symbol, session_date")
    total = len(whole)
    marts.execute("CREATE TABLE public.saved_mart AS SELECT * FROM marts.security_daily "
                  "WHERE session_date BETWEEN '2024-06-10' AND '2024-06-14'")
    try:
        marts.execute("UPDATE market.bars_daily SET close = close * 2 WHERE symbol = 'MSFT' AND session_date IN (%s, %s)",
                      (inside, outside))
        marts.execute("CREATE TABLE public.saved_bar AS SELECT * FROM market.bars_daily WHERE symbol = 'MSFT' AND session_date = %s", (gone,))
        marts.execute("DELETE FROM market.bars_daily WHERE symbol = 'MSFT' AND session_date = %s", (gone,))
        (run,) = marts.run("2024-06-10", "2024-06-14", selection="marts/security_daily")
        assert run["success"]
        materialization = run["result"].asset_materializations_for_node("marts_dbt")
        assert {m.partition for m in materialization} >= {"2024-06-10", "2024-06-14"}
        after = dict(marts.query("SELECT session_date, close FROM marts.security_daily WHERE symbol = 'MSFT'"))
        assert after[inside] == pytest.approx(2 * before[inside]), "inside the window: rebuilt from the sources"
        assert after[outside] == before[outside], "outside the window: untouched"
        assert gone not in after, "a row that left the sources inside the window leaves the mart"
        assert marts.query("SELECT count(*) FROM marts.security_daily") == [(total - 1,)]
    finally:  # the sources, then the window's mart rows as they were (the warehouse is shared)
        marts.execute("INSERT INTO market.bars_daily SELECT * FROM public.saved_bar")
        marts.execute("DROP TABLE public.saved_bar")
        marts.execute("UPDATE market.bars_daily SET close = close / 2 WHERE symbol = 'MSFT' AND session_date IN (%s, %s)",
                      (inside, outside))
        marts.execute("DELETE FROM marts.security_daily WHERE session_date BETWEEN '2024-06-10' AND '2024-06-14'")
        marts.execute("INSERT INTO marts.security_daily SELECT * FROM public.saved_mart")
        marts.execute("DROP TABLE public.saved_mart")
    assert marts.query("SELECT * FROM marts.security_daily ORDER BY symbol, session_date") == whole


def test_failing_dbt_tests_are_failed_asset_checks(marts: MartsPipeline) -> None:
    day = SESSIONS[1]
    good_close = marts.query("SELECT close FROM marts.security_daily WHERE symbol = 'AAPL' AND session_date = %s", (day,))
    try:
        marts.execute("UPDATE market.bars_daily SET close = -close WHERE symbol = 'AAPL' AND session_date = %s", (day,))
        marts.execute("UPDATE portfolio.portfolio_metrics SET max_drawdown = 0.5 WHERE portfolio_id = 'p_bob' AND session_date = %s", (day,))
        (run,) = marts.run(str(day), selection=MARTS, raise_on_error=False)
        assert not run["success"], "dbt build exits non-zero on a failing test, so the step fails"
        results = check_results(run)
        failed = {k for k, passed in results.items() if not passed}
        assert failed == {
            ("staging/stg_bars_daily", "stg_bars_daily_ohlc_consistent"),  # low <= close no longer holds
            ("marts/portfolio_performance", "accepted_range_portfolio_performance_max_drawdown__0___1"),
        }, failed
        # dbt build skips what is downstream of a failed test: security_daily keeps its last good rows
        # and its own tests do not run (no result for them rather than a pass).
        assert marts.query("SELECT close FROM marts.security_daily WHERE symbol = 'AAPL' AND session_date = %s",
                           (day,)) == good_close and good_close[0][0] > 0
        assert not {k for k in results if k[0] == "marts/security_daily"}
        assert ("staging/stg_bars_daily", "unique_combination_of_columns_stg_bars_daily_symbol__session_date") in results
    finally:
        marts.execute("UPDATE market.bars_daily SET close = -close WHERE symbol = 'AAPL' AND session_date = %s", (day,))
        marts.execute("UPDATE portfolio.portfolio_metrics SET max_drawdown = -0.16 WHERE portfolio_id = 'p_bob' AND session_date = %s", (day,))
    (run,) = marts.run(str(day), selection=MARTS)
    assert run["success"] and all(check_results(run).values())


# ---- dbt by hand: `wealth-pipeline dbt ...` from dbt_project/ with the project's profile ----------------
CLI = Path(sys.executable).parent / "wealth-pipeline"


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without dbt/warehouse variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "WEALTH_DATABASE_URL", "WEALTH_DAGSTER_DATABASE_URL"))}
    return {**env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **extra}


# warehouse URL -> dbt's partial_parse.msgpack from the last `wealth-pipeline dbt` run on it. dbt keeps
# a parse only for the same profile (its host, port and database included), so the runs on one shared
# marts warehouse reuse it and skip a full parse each (about 7 s of CPU on the 2-core CI machine); dbt
# checks the file itself and parses in full whenever the project, profile or vars differ.
_PARSED: dict[str, Path] = {}
_PARSED_DIR = Path(tempfile.mkdtemp(prefix="wealth-dbt-parse-"))


def wealth_dbt(url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``wealth-pipeline dbt ARGS`` on the warehouse ``url`` (what the README documents)."""
    target = Path(args[args.index("--target-path") + 1]) if "--target-path" in args else None
    if target is not None and url in _PARSED:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(_PARSED[url], target / "partial_parse.msgpack")
    done = subprocess.run([str(CLI), "dbt", *args], capture_output=True, text=True, timeout=900,
                          env=_clean_env(WEALTH_DATABASE_URL=url, WEALTH_HOME=str(home)))
    if target is not None and (target / "partial_parse.msgpack").is_file():
        _PARSED[url] = Path(shutil.copy(target / "partial_parse.msgpack", _PARSED_DIR / f"{uuid.uuid4().hex}.msgpack"))
    return done


def dbt_in(project: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``dbt ARGS`` in a copy of the project, with the profile variables of ``url``."""
    env = _clean_env(**{**dbt_cli_env(url), "DBT_PROFILES_DIR": str(project)})
    return subprocess.run([dbt_executable(), *args], cwd=project, capture_output=True, text=True, timeout=900, env=env)


def copy_project(folder: Path) -> Path:
    project = folder / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    return project


def test_docs_generate_with_the_projects_profile_and_types_match_the_database(marts: MartsPipeline, tmp_path: Path) -> None:
    target = tmp_path / "target"
    docs = wealth_dbt(marts.warehouse_url, tmp_path, "docs", "generate", "--target-path", str(target))
    assert docs.returncode == 0, docs.stdout + docs.stderr
    assert (target / "index.html").is_file()
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    assert len(models) == 13
    for node in models:
        assert node["description"].strip(), f"{node['name']} has no description"
        assert all(c["description"].strip() and "{{" not in c["description"] for c in node["columns"].values()), node["name"]
        if node["config"]["materialized"] == "ephemeral":  # no relation: its columns are those of its select
            continue
        in_db = {c["name"]: c["type"] for c in catalog["nodes"][node["unique_id"]]["columns"].values()}
        documented = {c["name"]: c["data_type"] for c in node["columns"].values()}
        assert documented == in_db, node["name"]  # every column documented, with the database's type
    assert {n["name"] for n in models if n["config"]["contract"]["enforced"]} == {
        "security_daily", "portfolio_performance", "model_signals"}


def test_dbt_test_runs_with_the_projects_profile(
    pg_server_url: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """`wealth-pipeline dbt test` wires the profile to the warehouse and every data test passes.

    On PostgreSQL only: the command's wiring does not depend on the flavour, and on TimescaleDB every
    data test already ran in the marts build (test_the_pipeline_builds_every_mart_and_its_dbt_tests_pass).
    """
    marts = build_marts_warehouse(pg_server_url, tmp_path_factory.mktemp("marts-postgres"))
    target = tmp_path / "target"
    tested = wealth_dbt(marts.warehouse_url, tmp_path, "test", "--target-path", str(target))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    manifest = json.loads((target / "manifest.json").read_text())
    results = json.loads((target / "run_results.json").read_text())["results"]
    data_tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"]
    assert len(results) == len(data_tests) > 40
    assert {r["status"] for r in results} == {"pass"}


def test_a_windowed_run_tests_its_window_and_a_run_by_hand_tests_every_row(
    pg_server_url: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """`where: session_window` (macros/get_where_subquery.sql): a bad mart row outside the window does
    not fail a window's tests (that window's own run tested it), one inside does, and `dbt test`
    with no window checks every row. PostgreSQL only: the macro is SQL rendering, not flavour."""
    marts = build_marts_warehouse(pg_server_url, tmp_path_factory.mktemp("marts-postgres"))
    bad, other = SESSIONS[2], dt.date(2024, 6, 10)
    test_name = "accepted_range_security_daily_close__False__0"
    (saved,) = marts.query("SELECT close FROM marts.security_daily WHERE symbol = 'MSFT' AND session_date = %s", (bad,))
    marts.execute("UPDATE marts.security_daily SET close = -1 WHERE symbol = 'MSFT' AND session_date = %s", (bad,))
    try:
        def failed(*window: dt.date) -> set[str]:
            args = ["--vars", json.dumps({"start_date": str(window[0]), "end_date": str(window[1])})] if window else []
            target = tmp_path / f"target-{len(window)}-{window[0] if window else 'all'}"
            done = wealth_dbt(marts.warehouse_url, tmp_path, "test", "--select", "security_daily",
                              "--target-path", str(target), *args)
            results = json.loads((target / "run_results.json").read_text())["results"]
            assert results, done.stdout + done.stderr
            return {r["unique_id"].split(".")[2] for r in results if r["status"] != "pass"}

        assert failed(other, other) == set()
        assert failed(other, bad) == {test_name}
        assert failed() == {test_name}
    finally:
        marts.execute("UPDATE marts.security_daily SET close = %s WHERE symbol = 'MSFT' AND session_date = %s", (saved[0], bad))


def test_source_freshness_grades_each_source_by_its_newest_session(marts: MartsPipeline, tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    yesterday, five_days_ago = today - dt.timedelta(days=1), today - dt.timedelta(days=5)
    try:
        marts.execute("INSERT INTO analytics.indicators_daily (symbol, session_date) VALUES ('AAPL', %s)", (yesterday,))
        marts.execute("INSERT INTO models.predictions VALUES ('AAPL', %s, %s, 0.5, 1)", (five_days_ago, MODEL_ID))
        out = tmp_path / "sources.json"
        ran = wealth_dbt(marts.warehouse_url, tmp_path, "source", "freshness", "--target-path", str(tmp_path / "target"),
                         "--output", str(out))
        assert ran.returncode == 1, ran.stdout + ran.stderr  # some sources are stale: dbt exits 1
        results = {r["unique_id"].removeprefix("source.wealth."): r for r in json.loads(out.read_text())["results"]}
        # warn after 4 days, error after 7 (daily sessions); the registry: 35 / 60 days of model data.
        assert {k: r["status"] for k, r in results.items()} == {
            "ref.securities": "pass",                 # replaced by this module's symbol_master run
            "analytics.indicators_daily": "pass",     # newest session yesterday
            "models.predictions": "warn",             # newest session five days ago
            "market.bars_daily": "error",             # June 2024
            "analytics.factor_exposures": "error",
            "portfolio.valuations": "error",
            "portfolio.portfolio_metrics": "error",
            "portfolio.currency_attribution": "error",
            "models.model_registry": "error",         # train_end 2024-04-30
        }
        newest = {"market.bars_daily": "SELECT max(session_date) FROM market.bars_daily",
                  "portfolio.valuations": "SELECT max(session_date) FROM portfolio.valuations",
                  "models.model_registry": "SELECT max(train_end) FROM models.model_registry",
                  "models.predictions": "SELECT max(session_date) FROM models.predictions"}
        for source, query in newest.items():
            loaded = dt.datetime.fromisoformat(results[source]["max_loaded_at"])
            assert (loaded.date(), loaded.time()) == (marts.query(query)[0][0], dt.time(0)), source
        assert dt.datetime.fromisoformat(results["models.predictions"]["max_loaded_at"]).date() == five_days_ago
    finally:
        marts.execute("DELETE FROM analytics.indicators_daily WHERE session_date = %s", (yesterday,))
        marts.execute("DELETE FROM models.predictions WHERE session_date = %s", (five_days_ago,))


def test_a_mart_that_breaks_its_contract_fails_and_the_mart_stays(marts: MartsPipeline, tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    model = project / "models" / "marts" / "model_signals.sql"
    model.write_text(model.read_text().replace("p.score_rank as rank", "p.score_rank::bigint as rank"))
    before = marts.query("SELECT symbol, rank FROM marts.model_signals ORDER BY 1")
    ran = dbt_in(project, marts.warehouse_url, "run", "--select", "model_signals")
    assert ran.returncode == 1
    assert "contract" in ran.stdout.lower() and "rank" in ran.stdout, ran.stdout
    assert marts.query("SELECT data_type FROM information_schema.columns WHERE table_schema = 'marts' "
                       "AND table_name = 'model_signals' AND column_name = 'rank'") == [("integer",)]
    assert marts.query("SELECT symbol, rank FROM marts.model_signals ORDER BY 1") == before


PROBE_SQL = "select * from (values (1, 2), (1, 2), (3, 5), (null::int, 7)) as t (a, b)\n"
# (test name, test definition, column or None, failing rows counted by hand on PROBE_SQL's four rows)
PROBE_TESTS = [
    ("ucc", {"unique_combination_of_columns": {"arguments": {"combination_of_columns": ["a", "b"]}}}, None, 1),
    ("ucc_quoted", {"unique_combination_of_columns": {"arguments": {"combination_of_columns": ["a", "b"],
                                                                     "quote_columns": True}}}, None, 1),
    ("range_inclusive", {"accepted_range": {"arguments": {"min_value": 1, "max_value": 3}}}, "a", 0),
    ("range_exclusive", {"accepted_range": {"arguments": {"min_value": 1, "max_value": 3, "inclusive": False}}}, "a", 3),
    ("range_max_only", {"accepted_range": {"arguments": {"max_value": 2}}}, "a", 1),
    ("expr_model", {"expression_is_true": {"arguments": {"expression": "a < b"}}}, None, 0),  # null a passes
    ("expr_column", {"expression_is_true": {"arguments": {"expression": ">= 5"}}}, "b", 2),
]


def test_local_generic_tests_count_the_failing_rows_like_dbt_utils(pg_url: str, tmp_path: Path) -> None:
    migrate.upgrade(pg_url)
    project = copy_project(tmp_path)
    (project / "models" / "probe").mkdir()
    (project / "models" / "probe" / "probe.sql").write_text(PROBE_SQL)
    model_tests: list[dict] = []
    columns: dict[str, list[dict]] = {"a": [], "b": []}
    for name, definition, column, _ in PROBE_TESTS:
        [(generic, body)] = definition.items()
        entry = {generic: {"name": f"probe_{name}", **body}}
        (model_tests if column is None else columns[column]).append(entry)

    def write_yml() -> None:
        (project / "models" / "probe" / "probe.yml").write_text(yaml.safe_dump({"version": 2, "models": [{
            "name": "probe", "description": "probe", "data_tests": model_tests,
            "columns": [{"name": c, "description": c, "data_tests": t} for c, t in columns.items()]}]}))

    write_yml()
    ran = dbt_in(project, pg_url, "build", "--select", "probe")
    assert ran.returncode == 1, ran.stdout  # some tests fail
    results = {r["unique_id"].split(".")[2]: r for r in json.loads((project / "target" / "run_results.json").read_text())["results"]}
    for name, _, _, failing in PROBE_TESTS:
        result = results[f"probe_{name}"]
        assert (result["status"], result["failures"]) == ("fail" if failing else "pass", failing), name
    # accepted_range with neither bound would pass everything: it is refused when the project is parsed.
    columns["a"].append({"accepted_range": {"name": "probe_no_bounds"}})
    write_yml()
    refused = dbt_in(project, pg_url, "build", "--select", "probe")
    assert refused.returncode == 2
    assert "probe_no_bounds" in refused.stdout and "accepted_range on column 'a' needs min_value or max_value" in refused.stdout


EPHEMERAL = {"stg_portfolios", "stg_valuations", "stg_portfolio_metrics", "stg_portfolio_attribution_totals"}


def test_dbt_column_schema_and_tests_reach_dagster() -> None:
    from wealth_pipeline.defs.marts.assets import marts_dbt

    for layer in ("marts", "staging"):
        documented = yaml.safe_load((DBT_PROJECT_DIR / "models" / layer / f"{layer}.yml").read_text())["models"]
        for model in documented:
            key = dg.AssetKey([layer, model["name"]])
            if model["name"] in EPHEMERAL:  # inlined into the portfolio mart: no relation, no asset
                assert key not in marts_dbt.specs_by_key
                continue
            spec = marts_dbt.specs_by_key[key]
            schema = spec.metadata["dagster/column_schema"]
            assert [(c.name, c.type) for c in schema.columns] == [(c["name"], c["data_type"]) for c in model["columns"]]
            assert all(c.description and "{{" not in c.description for c in schema.columns), model["name"]
    close = next(c for c in marts_dbt.specs_by_key[dg.AssetKey(["marts", "security_daily"])].metadata[
        "dagster/column_schema"].columns if c.name == "close")
    assert close.description == "Raw closing price of the session as delivered, in `currency`."  # docs.md block
    checks = {(k.asset_key.to_user_string(), k.name) for k in marts_dbt.check_keys}
    assert ("staging/stg_bars_daily", "stg_bars_daily_ohlc_consistent") in checks
    assert ("marts/model_signals", "unique_model_signals_symbol") in checks


def test_wealth_pipeline_dbt_points_dbt_at_the_embedded_local_cluster() -> None:
    home = Path(tempfile.mkdtemp(prefix="wealth-dbt-home-"))
    home.chmod(0o755)
    env = _clean_env(WEALTH_HOME=str(home))
    try:
        printed = subprocess.run([str(CLI), "dbt", "--print-env"], capture_output=True, text=True, env=env, timeout=300)
        assert printed.returncode == 0, printed.stderr
        exports = dict(line.removeprefix("export ").split("=", 1) for line in printed.stdout.splitlines())
        exports = {k: v.strip("'") for k, v in exports.items()}
        cluster = json.loads((home / "pg" / "cluster.json").read_text())
        assert (exports["DBT_PG_HOST"], exports["DBT_PG_PORT"], exports["DBT_PG_DBNAME"]) == (
            cluster["host"], str(cluster["port"]), "warehouse")
        assert exports["DBT_PROFILES_DIR"] == str(DBT_PROJECT_DIR) and exports["DBT_PG_ROLE"] == "wealth_owner"
        # The manual path the README documents: a migrated warehouse (roles), the exports, then dbt itself.
        upgraded = subprocess.run([str(CLI), "db", "upgrade"], capture_output=True, text=True, env=env, timeout=600)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        debug = subprocess.run([dbt_executable(), "debug"], cwd=DBT_PROJECT_DIR, capture_output=True, text=True,
                               env={**env, **exports}, timeout=300)
        assert debug.returncode == 0 and "All checks passed" in debug.stdout, debug.stdout
    finally:
        subprocess.run([str(CLI), "db", "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


# ---- the lone-session vendor run (defect: its marts_dbt step failed on a fresh warehouse) ---------------
LONE_SESSION = "2024-07-18"


def test_the_dbt_resource_knows_dbt_cores_version_without_starting_dbt(monkeypatch: pytest.MonkeyPatch) -> None:
    """dagster-dbt asks ``dbt --version`` (a 2.7 s process) and builds an adapter (1.8 s) per run; ours does neither."""
    import importlib.metadata

    import dagster_dbt.core.resource as dbt_resource_module
    from dagster_dbt import DbtCliResource
    from packaging import version

    from wealth_pipeline.defs.marts.project import dbt_resource

    for name in ("_cli_version", "_initialize_dbt_core_adapter"):
        assert name in vars(DbtCliResource), f"dagster-dbt renamed {name}, which ProjectDbtCliResource overrides"
    started: list[object] = []
    monkeypatch.setattr(dbt_resource_module, "check_output", lambda *args, **kwargs: started.append(args) or b"")
    resource = dbt_resource()
    assert resource._cli_version == version.parse(importlib.metadata.version("dbt-core"))
    assert started == []
    assert resource._initialize_dbt_core_adapter(["build"]) is None  # no in-process adapter (row counts unused)


def test_a_vendor_run_of_a_lone_session_builds_the_marts_on_a_fresh_warehouse(
    flavoured_db: tuple[str, str], tmp_path: Path
) -> None:
    _, url = flavoured_db
    migrate.upgrade(url)
    pipeline = Pipeline(url, str(tmp_path / "lake"), None)
    defs = build_definitions(pipeline.resources())
    materialize_range(LONE_SESSION, LONE_SESSION, "symbol_master", progress=False, definitions=defs,
                      instance=pipeline.instance)
    job = defs.resolve_job_def("vendor_ingest")
    # The marts' own upstream outside the vendor datasets' downstream (stg_securities reads the
    # symbol master) is in the job: without it `dbt build` failed on "staging.stg_securities does not exist".
    assert dg.AssetKey(["staging", "stg_securities"]) in job.asset_layer.executable_asset_keys
    result = job.execute_in_process(instance=pipeline.instance, partition_key=LONE_SESSION, raise_on_error=False)
    failures = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
    assert result.success, failures
    bars = pipeline.query("SELECT symbol, session_date, close, adj_close FROM market.bars_daily ORDER BY 1")
    import polars as pl

    from wealth_pipeline.providers.synthetic import SyntheticMarket

    day = dt.date(2024, 7, 18)  # NYSE and TSX both open: a bar for every symbol listed that day (#21: not GEHC)
    listed = SyntheticMarket(universe_size=12).symbol_master().filter(
        (pl.col("valid_from") <= day) & (pl.col("valid_to").is_null() | (pl.col("valid_to") > day)))
    assert len(bars) == listed.height < 12 and {b[1] for b in bars} == {day}
    assert pipeline.query("SELECT symbol, session_date, close, adj_close FROM marts.security_daily ORDER BY 1") == bars
    from wealth_pipeline.defs.marts.assets import marts_dbt

    dbt_tests = [c for c in result.get_asset_check_evaluations() if c.asset_check_key in marts_dbt.check_keys]
    assert len(dbt_tests) > 40 and all(c.passed for c in dbt_tests), [
        (c.asset_key.to_user_string(), c.check_name) for c in dbt_tests if not c.passed]


def test_a_mart_selected_without_its_never_built_upstream_views_fails_naming_them(pg_url: str, tmp_path: Path) -> None:
    migrate.upgrade(pg_url)
    pipeline = MartsPipeline(pg_url, str(tmp_path / "lake"), None)
    (run,) = pipeline.run(LONE_SESSION, selection="marts/security_daily", raise_on_error=False)
    assert not run["success"]
    [failure] = [e.event_specific_data.error for e in run["result"].all_events if e.is_step_failure]
    for view in ("stg_bars_daily", "stg_securities", "stg_indicators_daily", "stg_factor_exposures"):
        assert (f"marts/security_daily reads staging.{view}, which does not exist yet: "
                f"materialize staging/{view} with it") in failure.message, failure.message
    assert "DagsterDbtCliRuntimeError" not in failure.to_string(), "refused before dbt starts"
    assert pipeline.query("SELECT to_regclass('marts.security_daily')") == [(None,)]
