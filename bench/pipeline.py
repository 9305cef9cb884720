"""The whole daily graph through Dagster for N securities x Y years, then one more daily session.

    .venv/bin/python bench/pipeline.py                       # 500 securities x 10 years (2,520 sessions)
    .venv/bin/python bench/pipeline.py --securities 50 --years 1

A fresh embedded state (temporary WEALTH_HOME: its own PostgreSQL cluster, lakehouse, Dagster home)
is migrated and materialized the way a user's single-run backfill is (``cli.materialize_range``):
every daily asset but the model and what scores with it over the range, the model on that history,
predictions (and the marts showing them) for the last session, then one more session through the
whole graph. Printed: wall seconds for start-up (importing the definitions), run planning (creating
each run, planned events included), each asset step, Dagster event recording, lakehouse writes,
warehouse loads, dbt, model training, predictions and the total.

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
    store.Lakehouse._write = _timed("lakehouse writes", store.Lakehouse._write)
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
    cluster.start()
    parts = dg.DailyPartitionsDefinition(start_date="2010-01-01")
    keys = parts.get_partition_keys()[:partitions]

    def make(name: str, deps: list[dg.AssetsDefinition]) -> dg.AssetsDefinition:
        @dg.asset(name=name, partitions_def=parts, deps=deps, backfill_policy=dg.BackfillPolicy.single_run())
        def _asset() -> dg.MaterializeResult:
            return dg.MaterializeResult()

        return _asset

    chain: list[dg.AssetsDefinition] = []
    for i in range(assets):
        chain.append(make(f"a{i}", chain[-1:]))
    defs = dg.Definitions(assets=chain, jobs=[dg.define_asset_job("ref", selection="*")], executor=dg.in_process_executor)
    timings = {}
    saved = os.environ.get("DAGSTER_EVENT_BATCH_SIZE")
    try:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--securities", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--end", default="2024-12-31", help="last session of the backfill range")
    parser.add_argument("--no-reference", action="store_true", help="skip the same-process event-recording reference")
    parser.add_argument("--keep", action="store_true", help="keep the temporary WEALTH_HOME (printed)")
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
    from wealth_pipeline.settings import apply_dagster_tuning

    apply_dagster_tuning()

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
    phases: dict[str, float] = {}

    def run(label: str, first: str, last: str, selection: Any) -> None:
        t0 = time.perf_counter()
        summary = cli.materialize_range(first, last, selection, progress=True, definitions=defs, instance=instance)
        phases[label] = time.perf_counter() - t0
        for item in summary["runs"]:
            for key, seconds in step_seconds(item["result"]).items():
                steps[key] += seconds

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
    run("one more session", extra, extra, dg.AssetSelection.all() - model)
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
    print(f"{'total':40s} {total:8.1f}")
    print(f"{'total excluding model training':40s} {total - step('model'):8.1f}")
    if not args.keep:
        environment.local_cluster().stop()
    if not args.no_reference:
        partitions = min(len(keys), 250)
        tuned, previous = reference_events(partitions)
        print(f"\nreference (same process): 25 assets x {partitions} partitions, no compute: "
              f"tuned {tuned:.1f} s, previous layout {previous:.1f} s -> {previous / tuned:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
