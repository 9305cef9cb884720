"""Live progress of CLI runs from Dagster's own events, a full event log file, and the closing summary.

A run executes in a worker thread; this thread reads the run's event records from the instance (the
same PostgreSQL event log the UI reads) every half second, so progress is what Dagster recorded:
steps done out of the plan, the step running now, partitions materialized, elapsed time and an ETA
from the steps' pace. Every record goes to the log file; the terminal gets INFO-level messages and
errors (``--verbose``: every record; ``--quiet``: errors and the summary only). Dagster's own
console logger is silenced for these runs (its DEBUG line per asset-partition was 98% of the demo's
output); nothing is lost, it is all in the log file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

POLL_SECONDS = 0.5
QUIET, NORMAL, VERBOSE = 0, 1, 2


@dataclass
class RunStats:
    """What one run did, counted from its events."""

    label: str
    run_id: str
    total_steps: int
    partitions: int
    steps_done: int = 0
    steps_failed: int = 0
    current: str = ""
    seconds: float = 0.0
    success: bool | None = None
    checks_passed: int = 0
    checks_failed: int = 0
    checks_warned: int = 0
    materializations: int = 0
    rejected: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)

    def rejected_rows(self) -> int:
        """Rejected (quarantined) rows of the run: per asset, the sum over its partitions' materializations,
        or the value once when every partition repeats the same window figure."""
        total = 0
        for values in self.rejected.values():
            total += values[0] if len(set(values)) == 1 else sum(values)
        return total


def _terminal() -> bool:
    return Console().is_terminal


def root_cause(error: Any) -> str:
    """The innermost cause's last message line: what failed, not "Exceeded max_retries"."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    lines = [line for line in (error.message or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else getattr(error, "cls_name", "") or "error"


def _metadata_int(metadata: dict[str, Any], key: str) -> int | None:
    value = metadata.get(key)
    raw = getattr(value, "value", value)
    return int(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None


class _ToLog(io.TextIOBase):
    """A text stream whose lines go to the follower's log file (and to ``echo`` with --verbose)."""

    def __init__(self, follower: EventFollower, name: str, echo: Any = None):
        self.follower, self.name, self.echo, self.pending = follower, name, echo, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.follower._write(f"{dt.datetime.now(dt.UTC).isoformat(timespec='milliseconds')} {self.name:8} {line}")
            if self.echo is not None:
                self.echo.write(line + "\n")
        return len(text)


class EventFollower:
    """Follows runs through the instance's event log: terminal progress, log file, statistics."""

    def __init__(self, console: Console | None = None, log_path: Path | None = None, verbosity: int = NORMAL):
        # Not a terminal (make demo | tee, CI): rich would wrap the summary at 80 columns.
        # The console keeps today's stdout: during runs sys.stdout/sys.stderr go to the log file (dbt's
        # streamed output, library warnings), so the terminal shows progress, INFO messages and errors.
        self.console = console or Console(file=sys.stdout, highlight=False, width=None if _terminal() else 132)
        self._lock = threading.Lock()
        self.log_path = log_path
        self.verbosity = verbosity
        self.runs: list[RunStats] = []
        self._log = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = log_path.open("a", encoding="utf-8")

    # --- output -------------------------------------------------------------------------------
    def say(self, message: str, *, error: bool = False) -> None:
        """A line on the terminal (errors even with --quiet) and in the log file."""
        if error or self.verbosity >= NORMAL:
            self.console.print(message, style="red" if error else None, markup=False, highlight=False)
        self._write(f"{dt.datetime.now(dt.UTC).isoformat(timespec='milliseconds')} CLI      {message}")

    def _write(self, line: str) -> None:
        with self._lock:
            if self._log is not None:
                self._log.write(line.replace("\n", "\n    ") + "\n")

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def logger_config(self) -> dict[str, Any]:
        """Run config for Dagster's console logger: silent unless --verbose (the log file has everything)."""
        return {"console": {"config": {"log_level": "DEBUG" if self.verbosity >= VERBOSE else "CRITICAL"}}}

    # --- following ----------------------------------------------------------------------------
    def follow(self, instance: Any, label: str, run_id: str, total_steps: int, partitions: int,
               execute: Callable[[], Any]) -> tuple[Any, RunStats]:
        """Run ``execute`` (which must use ``run_id``) in a worker thread and follow its events here."""
        stats = RunStats(label, run_id, total_steps, partitions)
        self.runs.append(stats)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["result"] = execute()
            except BaseException as exc:  # re-raised in the calling thread
                outcome["error"] = exc

        started = time.monotonic()
        worker = threading.Thread(target=work, name=f"run-{label}", daemon=True)
        live = None
        if self.verbosity >= NORMAL and self.console.is_terminal:
            live = Live(Text(""), console=self.console, refresh_per_second=4, transient=True,
                        redirect_stdout=False, redirect_stderr=False)
            live.start()
        echo = self.console.file if self.verbosity >= VERBOSE else None
        with contextlib.redirect_stdout(_ToLog(self, "STDOUT", echo)), contextlib.redirect_stderr(_ToLog(self, "STDERR", echo)):
            worker.start()
            self._wait(instance, stats, worker, started, live)
        stats.seconds = time.monotonic() - started
        if "error" in outcome:
            raise outcome["error"]
        result = outcome["result"]
        stats.success = bool(result.success)
        return result, stats

    def _wait(self, instance: Any, stats: RunStats, worker: threading.Thread, started: float, live: Any) -> None:
        cursor = None
        try:
            while True:
                alive = worker.is_alive()
                cursor = self._drain(instance, stats, cursor, started)
                if live is not None:
                    live.update(Text(self._progress_line(stats, time.monotonic() - started)))
                if not alive:
                    break
                worker.join(POLL_SECONDS)
        finally:
            if live is not None:
                live.stop()

    def _progress_line(self, stats: RunStats, elapsed: float) -> str:
        done = stats.steps_done + stats.steps_failed
        eta = "?"
        if 0 < done < stats.total_steps:
            eta = f"{elapsed / done * (stats.total_steps - done):.0f}s"
        elif done >= stats.total_steps:
            eta = "0s"
        current = f", running {stats.current}" if stats.current and done < stats.total_steps else ""
        return (f"[{stats.label}] steps {done}/{stats.total_steps}{current}, {stats.partitions} partition(s), "
                f"elapsed {elapsed:.0f}s, ETA {eta}")

    def _drain(self, instance: Any, stats: RunStats, cursor: str | None, started: float) -> str | None:
        while True:
            connection = instance.get_records_for_run(stats.run_id, cursor=cursor, limit=1000)
            for record in connection.records:
                self._handle(stats, record.event_log_entry, started)
            cursor = connection.cursor or cursor
            if not connection.has_more:
                return cursor

    def _handle(self, stats: RunStats, entry: Any, started: float) -> None:
        event = entry.dagster_event
        kind = event.event_type_value if event is not None else "LOG"
        message = (event.message if event is not None and event.message else entry.user_message) or ""
        when = dt.datetime.fromtimestamp(entry.timestamp, dt.UTC).isoformat(timespec="milliseconds")
        level = logging.getLevelName(entry.level)
        self._write(f"{when} {level:8} {stats.run_id[:8]} {entry.step_key or '-'} {kind} {message}")
        error = getattr(getattr(event, "event_specific_data", None), "error", None) if event is not None else None
        if error is not None and hasattr(error, "to_string"):
            self._write(error.to_string())
        if event is None:
            if entry.level >= logging.ERROR:
                self.say(f"[{stats.label}] {entry.step_key or ''} {message}", error=True)
            elif (entry.level >= logging.INFO and self.verbosity >= NORMAL) or self.verbosity >= VERBOSE:
                self._above(f"[{stats.label}] {entry.step_key or ''}: {message}")
            return
        if self.verbosity >= VERBOSE:
            self._above(f"[{stats.label}] {kind} {entry.step_key or ''} {message}")
        if kind == "STEP_START":
            stats.current = entry.step_key or ""
        elif kind in ("STEP_SUCCESS", "STEP_SKIPPED"):
            stats.steps_done += 1
            if self.verbosity >= NORMAL and not self.console.is_terminal:  # a log-friendly line per step
                self.console.print(self._progress_line(stats, time.monotonic() - started), highlight=False, markup=False)
        elif kind == "STEP_FAILURE":
            stats.steps_failed += 1
            text = root_cause(error) if error is not None else message
            stats.errors.append(f"{entry.step_key}: {text}")
            self.say(f"[{stats.label}] step {entry.step_key} FAILED: {text}", error=True)
        elif kind == "ASSET_MATERIALIZATION":
            stats.materializations += 1
            materialization = event.event_specific_data.materialization
            rejected = _metadata_int(dict(materialization.metadata), "rejected_rows")
            if rejected is not None:
                stats.rejected[materialization.asset_key.to_user_string()].append(rejected)
        elif kind == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if evaluation.passed:
                stats.checks_passed += 1
            elif getattr(evaluation.severity, "value", str(evaluation.severity)) == "WARN":
                stats.checks_warned += 1
            else:
                stats.checks_failed += 1

    def _above(self, line: str) -> None:
        """A message printed above the progress line."""
        self.console.print(line, highlight=False, markup=False)

    # --- summary --------------------------------------------------------------------------------
    def summary_table(self, tables: list[tuple[str, int]] | None = None) -> list[Table]:
        """Runs with their seconds, checks and rejected rows; then rows per warehouse table."""
        runs = Table(title="runs", title_justify="left")
        for column, justify in (("stage", "left"), ("run", "left"), ("status", "left"), ("seconds", "right"),
                                ("steps", "right"), ("materializations", "right"),
                                ("checks passed/failed/warned", "right"), ("quarantined rows", "right")):
            runs.add_column(column, justify=justify)
        for s in self.runs:
            runs.add_row(s.label, s.run_id[:8], "success" if s.success else "FAILED", f"{s.seconds:.1f}",
                         f"{s.steps_done}/{s.total_steps}", f"{s.materializations:,}",
                         f"{s.checks_passed}/{s.checks_failed}/{s.checks_warned}", f"{s.rejected_rows():,}")
        if len(self.runs) > 1:
            runs.add_row("total", f"{len(self.runs)} runs", "", f"{sum(s.seconds for s in self.runs):.1f}", "",
                         f"{sum(s.materializations for s in self.runs):,}",
                         f"{sum(s.checks_passed for s in self.runs)}/{sum(s.checks_failed for s in self.runs)}/"
                         f"{sum(s.checks_warned for s in self.runs)}",
                         f"{sum(s.rejected_rows() for s in self.runs):,}", end_section=True)
        out = [runs]
        if tables:
            rows = Table(title="warehouse tables", title_justify="left")
            rows.add_column("table")
            rows.add_column("rows", justify="right")
            for name, count in tables:
                rows.add_row(name, f"{count:,}")
            out.append(rows)
        return out
