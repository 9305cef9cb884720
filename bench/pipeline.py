"""The whole daily graph through Dagster for N securities x Y years, then one more daily session.

    .venv/bin/python bench/pipeline.py                       # 500 securities x 10 years (2,520 sessions)
    .venv/bin/python bench/pipeline.py --securities 50 --years 1

A fresh embedded state (temporary WEALTH_HOME: its own PostgreSQL cluster, lakehouse, Dagster home)
is migrated and materialized the way a user's single-run backfill is (``cli.materialize_range``):
every daily asset but the model and what scores with it over the range, the model on that history,
predictions (and the marts showing them) for the last session, then one more session through the
whole graph. Printed: wall seconds for start-up (importing the definitions), run planning (creating
each run, planned events included), each asset step, Dagster event recording, lakehouse writes
(Delta commits of the table tiers, object writes of the raw tier and artifacts, partition deletes),
warehouse loads, dbt, model training, predictions and the total.

The extra session carries corporate actions (issue 14: ``--dividends 10 --splits 1`` by default):
the synthetic market's own actions that day count, the rest are planted (``plant_actions``). Its
report: wall seconds and breakdown, any restatement ``bars`` asked for, and the rows written per
lakehouse table (each Delta commit's rows and the rows of the files it added, from its log entry)
and per warehouse table (inserted + updated + deleted, ``pg_stat_user_tables``), which a
point-in-time adjustment model bounds by the session's rows.

Reference in the same process (``--reference``, on by default): Dagster's event recording for a
synthetic graph of the same shape (25 assets x min(sessions, 250) partitions, no compute) with the
project's tuning against the previous layout (no ``DAGSTER_EVENT_BATCH_SIZE``, per-event planned
events), printed as a ratio.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import functools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TIMERS: dict[str, float] = collections.defaultdict(float)
COUNTS: dict[str, int] = collections.defaultdict(int)
RECORDING = False  # while True, every Delta commit is listed in COMMITS (the corporate-action session)
COMMITS: list[tuple[str, int, bool, int | None, Any]] = []


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` adding its wall time to TIMERS[name] (outermost call only, so recursion is not double-counted)."""
    depth = {"n": 0}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth["n"] += 1
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            depth["n"] -= 1
            if depth["n"] == 0:
                TIMERS[name] += time.perf_counter() - started
                COUNTS[name] += 1

    return wrapper


def instrument() -> None:
    """Wrap the layers whose time is reported; before the definitions import, so bound names see it."""
    from dagster._core.instance.methods import event_methods
    from dagster._core.instance.runs import run_domain

    from wealth_pipeline.lakehouse import store
    from wealth_pipeline.warehouse import loader

    event_methods.EventMethods.handle_new_event = _timed("event recording", event_methods.EventMethods.handle_new_event)
    run_domain.RunDomain.create_run = _timed("run planning", run_domain.RunDomain.create_run)
    # Table tiers (processed, analytics, models...) commit through Lakehouse._commit (Delta); the raw
    # tier and artifacts write objects through Lakehouse._write; a dropped partition is a Delta delete.
    store.Lakehouse._write = _timed("lakehouse writes", store.Lakehouse._write)
    commit = _timed("lakehouse writes", store.Lakehouse._commit)

    def recorded_commit(self: Any, tier: str, dataset: str, rows: Any, *args: Any, **kwargs: Any) -> Any:
        result = commit(self, tier, dataset, rows, *args, **kwargs)
        if RECORDING:
            COMMITS.append((f"{tier}/{dataset}", rows.height, bool(getattr(result, "changed", True)),
                            getattr(result, "version", None), self))
        return result

    store.Lakehouse._commit = recorded_commit
    store.Lakehouse.delete_partition = _timed("lakehouse writes", store.Lakehouse.delete_partition)
    for name in ("load_window", "replace_table", "upsert"):
        setattr(loader, name, _timed("warehouse loads", getattr(loader, name)))


def step_seconds(result: Any) -> dict[str, float]:
    """Wall seconds of each successful step of a run, from its STEP_SUCCESS events."""
    out: dict[str, float] = {}
    for event in result.all_events:
        if event.is_step_success:
            out[event.step_key] = event.event_specific_data.duration_ms / 1000.0
    return out


def sessions_for(years: int, end: dt.date) -> tuple[str, str]:
    start = dt.date(end.year - years, end.month, end.day) + dt.timedelta(days=1)
    while start.weekday() >= 5:
        start += dt.timedelta(days=1)
    return start.isoformat(), end.isoformat()


def reference_events(partitions: int, assets: int = 25) -> tuple[float, float]:
    """(tuned, previous layout) wall seconds of a no-compute single-run backfill on fresh instances."""
    import shutil

    import dagster as dg
    import psycopg

    from wealth_pipeline.environment import REPO_ROOT, dagster_storage_url
    from wealth_pipeline.warehouse.localpg import LocalPostgres

    folder = Path(tempfile.mkdtemp(prefix="bench-events-"))
    folder.chmod(0o755)
    cluster = LocalPostgres(folder / "pg")
    parts = dg.DailyPartitionsDefinition(start_date="2010-01-01")
    keys = parts.get_partition_keys()[:partitions]

    def make(name: str, deps: list[dg.AssetsDefinition]) -> dg.AssetsDefinition:
        @dg.asset(name=name, partitions_def=parts, deps=deps, backfill_policy=dg.BackfillPolicy.single_run())
        def _asset():  # unannotated: Dagster resolves annotations, and `dg` is local here (future import)
            return dg.MaterializeResult()

        return _asset

    chain: list[dg.AssetsDefinition] = []
    for i in range(assets):
        chain.append(make(f"a{i}", chain[-1:]))
    defs = dg.Definitions(assets=chain, jobs=[dg.define_asset_job("ref", selection="*")], executor=dg.in_process_executor)
    timings = {}
    saved = os.environ.get("DAGSTER_EVENT_BATCH_SIZE")
    cluster.start()
    try:  # the cluster is stopped and its folder removed whatever fails below
        for layout in ("tuned", "previous"):
            database = f"ref_{layout}"
            cluster.ensure_database(database)
            url = cluster.socket_url(database) or cluster.url(database)
            home = folder / layout
            home.mkdir()
            if layout == "tuned":
                with psycopg.connect(cluster.url(), autocommit=True) as conn:
                    conn.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
                shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
                os.environ["DAGSTER_EVENT_BATCH_SIZE"] = "10000"
            else:
                (home / "dagster.yaml").write_text("storage:\n  postgres:\n    postgres_url:\n      env: WEALTH_DAGSTER_DATABASE_URL\n")
                os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
            os.environ["WEALTH_DAGSTER_DATABASE_URL"] = dagster_storage_url(url)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                started = time.perf_counter()
                result = defs.resolve_job_def("ref").execute_in_process(
                    instance=instance, tags={"dagster/asset_partition_range_start": keys[0],
                                             "dagster/asset_partition_range_end": keys[-1]})
                timings[layout] = time.perf_counter() - started
                assert result.success
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
        else:
            os.environ["DAGSTER_EVENT_BATCH_SIZE"] = saved
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return timings["tuned"], timings["previous"]


def plant_actions(session: dt.date, dividends: int = 10, splits: int = 1) -> dict[str, list[str]]:
    """Make the synthetic market deliver ``dividends`` cash dividends and ``splits`` 2:1 splits on ``session``.

    The market's own actions on that session count towards the totals; the rest are planted on the
    listings with a bar on the session and the one before and no action (symbol order; the split on
    the highest close) with their prices as the market would deliver them: a dividend D = 1% of the
    previous close scales the session's OHLC by 1 - D / previous close (the total return is the
    market's), a split divides OHLC by 2 and doubles volume. Patched on the class, so the pipeline's
    cached instance (in this process) serves them. Returns the symbols by kind ("dividend", "split",
    "planted"), filled when the pipeline first reads the session.
    """
    import polars as pl

    from wealth_pipeline.providers.synthetic import SyntheticMarket

    original_bars, original_actions = SyntheticMarket.bars, SyntheticMarket.corporate_actions
    plans: dict[int, tuple[pl.DataFrame, pl.DataFrame, dict[str, list[str]]]] = {}
    planted: dict[str, list[str]] = {}  # filled when the pipeline first asks for the session

    def plan(market: SyntheticMarket) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, list[str]]]:
        if id(market) not in plans:
            window = original_bars(market, session - dt.timedelta(days=10), session)
            today = window.filter(pl.col("session_date") == session)
            before = (window.filter(pl.col("session_date") < session).sort("session_date")
                      .group_by("symbol").agg(pl.col("close").last().alias("previous")))
            natural = original_actions(market, session, session)
            busy = set(natural["symbol"].to_list())
            free = today.join(before, on="symbol").filter(~pl.col("symbol").is_in(list(busy))).sort("symbol")
            n_div = max(0, dividends - natural.filter(pl.col("action_type") == "dividend").height)
            n_split = max(0, splits - natural.filter(pl.col("action_type") == "split").height)
            split_rows = free.sort("close", descending=True).head(n_split)
            div_rows = free.filter(~pl.col("symbol").is_in(split_rows["symbol"].to_list())).head(n_div)
            if split_rows.height < n_split or div_rows.height < n_div:
                raise SystemExit(f"bench/pipeline: {session} has {free.height} listings free of actions; "
                                 f"cannot plant {n_div} dividends and {n_split} splits")
            div_rows = div_rows.with_columns((0.01 * pl.col("previous")).alias("amount"))
            added = pl.concat([
                div_rows.select("symbol", pl.lit(session).alias("ex_date"), pl.lit("dividend").alias("action_type"),
                                pl.lit(None, pl.Float64).alias("ratio"), "amount", "currency",
                                pl.lit("regular").alias("distribution_type")),
                split_rows.select("symbol", pl.lit(session).alias("ex_date"), pl.lit("split").alias("action_type"),
                                  pl.lit(2.0).alias("ratio"), pl.lit(None, pl.Float64).alias("amount"), "currency",
                                  pl.lit("split").alias("distribution_type")),
            ]).select([pl.col(c).cast(t) for c, t in natural.schema.items()])
            scale = pl.concat([
                div_rows.select("symbol", (1 - pl.col("amount") / pl.col("previous")).alias("price"),
                                pl.lit(1.0).alias("shares")),
                split_rows.select("symbol", pl.lit(0.5).alias("price"), pl.lit(2.0).alias("shares")),
            ])
            kinds = {"dividend": sorted(natural.filter(pl.col("action_type") == "dividend")["symbol"].to_list())
                     + div_rows["symbol"].to_list(),
                     "split": sorted(natural.filter(pl.col("action_type") == "split")["symbol"].to_list())
                     + split_rows["symbol"].to_list(),
                     "planted": div_rows["symbol"].to_list() + split_rows["symbol"].to_list()}
            plans[id(market)] = (added, scale, kinds)
            planted.update(kinds)
        return plans[id(market)]

    def bars(self: SyntheticMarket, start: dt.date, end: dt.date) -> pl.DataFrame:
        frame = original_bars(self, start, end)
        if not start <= session <= end:
            return frame
        _, scale, _ = plan(self)
        on = pl.col("session_date") == session
        frame = frame.join(scale, on="symbol", how="left")
        price = pl.when(on & pl.col("price").is_not_null()).then(pl.col("price")).otherwise(1.0)
        shares = pl.when(on & pl.col("shares").is_not_null()).then(pl.col("shares")).otherwise(1.0)
        return frame.with_columns(
            *[(pl.col(c) * price).alias(c) for c in ("open", "high", "low", "close")],
            (pl.col("volume") * shares).round(0).cast(frame.schema["volume"]).alias("volume"),
        ).drop("price", "shares")

    def corporate_actions(self: SyntheticMarket, start: dt.date, end: dt.date) -> pl.DataFrame:
        frame = original_actions(self, start, end)
        if not start <= session <= end:
            return frame
        added, _, _ = plan(self)
        return pl.concat([frame, added]).sort("ex_date", "symbol", "action_type")

    SyntheticMarket.bars = bars  # type: ignore[method-assign]
    SyntheticMarket.corporate_actions = corporate_actions  # type: ignore[method-assign]
    return planted


def warehouse_row_changes(url: str) -> dict[str, int]:
    """Rows inserted + updated + deleted so far per warehouse table (TimescaleDB chunks summed into
    their hypertable), from PostgreSQL's cumulative statistics."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        chunk_of: dict[str, str] = {}
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
            chunk_of = {f"{cs}.{cn}": f"{hs}.{hn}" for cs, cn, hs, hn in conn.execute(
                "SELECT chunk_schema, chunk_name, hypertable_schema, hypertable_name "
                "FROM timescaledb_information.chunks")}
        out: dict[str, int] = collections.defaultdict(int)
        for schema, name, changed in conn.execute(
                "SELECT schemaname, relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables"):
            key = f"{schema}.{name}"
            out[chunk_of.get(key, key)] += int(changed)
    return dict(out)


def report_session(
    session: str, planted: dict[str, list[str]], wall: float, steps: dict[str, float], timers: dict[str, float],
    restatements: list[str], warehouse_before: dict[str, int], warehouse_after: dict[str, int], securities: int,
) -> None:
    """The extra session's breakdown and the rows it wrote per lakehouse table and warehouse table."""
    print(f"\n=== one more session {session}: {len(planted.get('dividend', []))} dividends "
          f"({', '.join(planted.get('dividend', []))}), {len(planted.get('split', []))} split(s) "
          f"({', '.join(planted.get('split', []))}); planted: {', '.join(planted.get('planted', [])) or 'none'} ===")
    print(f"{'wall (whole graph, dbt and predictions)':40s} {wall:8.1f}   (target <= 20 s)")
    for name in ("run planning", "event recording", "lakehouse writes", "warehouse loads"):
        print(f"{name:40s} {timers.get(name, 0.0):8.1f}")
    print("steps:")
    for key, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"  {key:38s} {seconds:8.1f}")
    print(f"restatement requested: {'; '.join(restatements) or 'none'}")
    print(f"rows per lakehouse table (Delta commits that changed something: 'rows' handed over, 'in files' the "
          f"rows of the files those commits added, 'removed' files they replaced; a session of bars has at most "
          f"{securities} rows):")
    by_table: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    for table, rows, changed, version, lake in COMMITS:
        entry = by_table[table]
        entry[0] += 1
        entry[1] += rows if changed else 0
        if changed and version is not None:
            tier, dataset = table.split("/", 1)
            log = f"{lake.table_key(tier, dataset)}/_delta_log/{version:020d}.json"
            try:
                actions = [json.loads(line) for line in lake.store.get_bytes(log).splitlines() if line.strip()]
            except Exception:  # the figure is informative only
                actions = []
            for action in actions:
                if "add" in action and action["add"].get("stats"):
                    entry[2] += int(json.loads(action["add"]["stats"]).get("numRecords", 0))
                if "remove" in action:
                    entry[3] += 1
    print(f"  {'table':38s} {'commits':>7s} {'rows':>9s} {'in files':>9s} {'removed':>9s}")
    for table, (commits, written, in_files, removed) in sorted(by_table.items()):
        print(f"  {table:38s} {commits:7d} {written:9d} {in_files:9d} {removed:9d}")
    print("rows inserted + updated + deleted per warehouse table (pg_stat_user_tables):")
    for table in sorted(warehouse_after):
        changed = warehouse_after[table] - warehouse_before.get(table, 0)
        if changed:
            print(f"  {table:38s} {changed:9d}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--securities", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--end", default="2024-12-31", help="last session of the backfill range")
    parser.add_argument("--no-reference", action="store_true", help="skip the same-process event-recording reference")
    parser.add_argument("--keep", action="store_true", help="keep the temporary WEALTH_HOME (printed)")
    parser.add_argument("--no-cold", action="store_true", help="skip re-running the extra session in a new process")
    parser.add_argument("--dividends", type=int, default=10, help="cash dividends on the extra session (issue 14)")
    parser.add_argument("--splits", type=int, default=1, help="2:1 splits on the extra session (issue 14)")
    args = parser.parse_args(argv)

    total_started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    home.chmod(0o755)
    start, end = sessions_for(args.years, dt.date.fromisoformat(args.end))
    os.environ.update({
        "WEALTH_HOME": str(home), "WEALTH_SYNTHETIC_UNIVERSE": str(args.securities), "WEALTH_PARTITION_START": start,
    })
    for name in ("WEALTH_DATABASE_URL", "WEALTH_DAGSTER_DATABASE_URL", "DAGSTER_HOME", "WEALTH_LAKEHOUSE_URI"):
        os.environ.pop(name, None)
    from wealth_pipeline.settings import apply_dagster_tuning, restore_interrupt_handler

    apply_dagster_tuning()
    # Started in the background (``cmd &``, nohup), SIGINT is ignored and every run after the model's
    # would wait 2 x 30 s for its compute-log tails (settings.restore_interrupt_handler).
    restore_interrupt_handler()

    started = time.perf_counter()
    instrument()
    import dagster as dg

    from wealth_pipeline import cli
    from wealth_pipeline.definitions import defs
    from wealth_pipeline.defs.models.assets import ModelConfig
    from wealth_pipeline.defs.partitions import trading_sessions
    startup = time.perf_counter() - started

    from wealth_pipeline import environment
    from wealth_pipeline.warehouse import migrate

    started = time.perf_counter()
    env = environment.bootstrap()
    migrate.upgrade(env.warehouse_url)
    setup = time.perf_counter() - started

    keys = trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
    history_end, extra = keys[-2], keys[-1]
    print(f"bench/pipeline: {args.securities} securities x {len(keys) - 1} sessions ({start}..{history_end}), "
          f"then {extra}; WEALTH_HOME={home}", flush=True)
    model = dg.AssetSelection.assets("model")
    scored = dg.AssetSelection.assets("predictions").downstream()
    instance = dg.DagsterInstance.get()
    steps: dict[str, float] = collections.defaultdict(float)
    session_steps: dict[str, float] = collections.defaultdict(float)
    phases: dict[str, float] = {}
    restatements: list[str] = []

    def run(label: str, first: str, last: str, selection: Any, into: dict[str, float] | None = None) -> None:
        t0 = time.perf_counter()
        summary = cli.materialize_range(first, last, selection, progress=True, definitions=defs, instance=instance)
        phases[label] = time.perf_counter() - t0
        for item in summary["runs"]:
            for key, seconds in step_seconds(item["result"]).items():
                steps[key] += seconds
                if into is not None:
                    into[key] += seconds
            if into is not None:
                for event in item["result"].all_events:
                    if event.is_step_materialization:
                        meta = event.event_specific_data.materialization.metadata.get("restatement")
                        if meta is not None and getattr(meta, "value", meta) != "none":
                            restatements.append(f"{event.step_key}: {getattr(meta, 'value', meta)}")

    run("history", start, history_end, dg.AssetSelection.all() - model - scored)
    t0 = time.perf_counter()
    job = dg.define_asset_job("bench_model", selection=model)
    result = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name).execute_in_process(
        instance=instance, run_config=dg.RunConfig({"model": ModelConfig(as_of=history_end)}))
    assert result.success
    phases["model"] = time.perf_counter() - t0
    for key, seconds in step_seconds(result).items():
        steps[key] += seconds
    before_extra = dict(TIMERS)
    global RECORDING
    planted = plant_actions(dt.date.fromisoformat(extra), args.dividends, args.splits) \
        if args.dividends or args.splits else {}
    time.sleep(1.5)  # let other backends' statistics reach the cumulative counters
    warehouse_before = warehouse_row_changes(env.warehouse_url)
    RECORDING = True
    run("one more session", extra, extra, dg.AssetSelection.all() - model, into=session_steps)
    RECORDING = False
    time.sleep(1.5)
    warehouse_after = warehouse_row_changes(env.warehouse_url)
    extra_timers = {k: v - before_extra.get(k, 0.0) for k, v in TIMERS.items()}
    total = time.perf_counter() - total_started

    def step(name: str) -> float:
        return sum(v for k, v in steps.items() if k == name or k.startswith(f"{name}.") or name in k.split("__"))

    dbt = sum(v for k, v in steps.items() if "dbt" in k or "marts" in k)
    print("\n=== bench/pipeline: wall seconds ===")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}")
    print(f"{'start-up (import definitions)':40s} {startup:8.1f}")
    print(f"{'database start + migrations':40s} {setup:8.1f}")
    for label, seconds in phases.items():
        print(f"{'phase: ' + label:40s} {seconds:8.1f}")
    print("steps (compute incl. lakehouse writes and warehouse loads):")
    for key, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"  {key:38s} {seconds:8.1f}")
    for name in ("run planning", "event recording", "lakehouse writes", "warehouse loads"):
        print(f"{name:40s} {TIMERS[name]:8.1f}   ({COUNTS[name]} calls)")
    print(f"{'dbt':40s} {dbt:8.1f}")
    print(f"{'model training':40s} {step('model'):8.1f}")
    print(f"{'predictions':40s} {step('predictions'):8.1f}")
    print(f"{'one more session (whole graph)':40s} {phases['one more session']:8.1f}")
    print(f"{'  of which event recording':40s} {TIMERS['event recording'] - before_extra.get('event recording', 0):8.1f}")
    report_session(extra, planted, phases["one more session"], session_steps, extra_timers, restatements,
                   warehouse_before, warehouse_after, args.securities)
    print(f"{'total':40s} {total:8.1f}")
    print(f"{'total excluding model training':40s} {total - step('model'):8.1f}")
    if not args.no_cold:
        # What a scheduled run pays on top: a new process imports the definitions (and, in its first
        # step, great_expectations). The same session again (identical content: no Delta commit).
        cold = cold_session(extra)
        print(f"{'same session again, in a new process':40s} {cold:8.1f}   "
              "(wealth-pipeline materialize --in-process: imports + the whole graph but the model)")
    if not args.keep:
        environment.local_cluster().stop()
    if not args.no_reference:
        partitions = min(len(keys), 250)
        tuned, previous = reference_events(partitions)
        print(f"\nreference (same process): 25 assets x {partitions} partitions, no compute: "
              f"tuned {tuned:.1f} s, previous layout {previous:.1f} s -> {previous / tuned:.1f}x faster")
    return 0


def cold_session(session: str) -> float:
    """Wall seconds of ``wealth-pipeline materialize --in-process`` of one session in a new process."""
    import subprocess

    command = [str(Path(sys.executable).parent / "wealth-pipeline"), "materialize", "--in-process", "-q",
               "--partition", session, "--select", "* and not key:model"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
