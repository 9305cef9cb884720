"""Checks of the CLI's inputs before anything runs: dates, partition keys, ranges, asset selections.

Every failure is an :class:`InputError` with one line naming the input (``--partition``, ``--select``,
a variable) and what would be valid; ``wealth-pipeline`` prints it and exits 2, without a traceback.
Partition keys are weekdays (``defs/partitions.py``); a weekday closed on every listing exchange is
a partition but not a session, so a single ``--partition`` on it is refused with the reason.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from wealth_pipeline.core import calendars

PARTITION_TIMEZONE = ZoneInfo("America/New_York")  # the partitions' timezone (defs/partitions.py)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SELECTION_KINDS = ("group", "key", "tag", "owner", "kind", "code_location", "column", "table_name")


class InputError(ValueError):
    """A command-line input or configuration value that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Bounds:
    """The partition keys that exist: from the partitions' start to their end (today when unset)."""

    start: dt.date
    end: dt.date
    start_source: str = "WEALTH_PARTITION_START"
    end_source: str = "today"


def today_in_partition_timezone(now: dt.datetime | None = None) -> dt.date:
    """Today's date in New York, where the partitions' days begin."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(PARTITION_TIMEZONE).date()


def bounds_from_settings(settings: object, today: dt.date | None = None) -> Bounds:
    """The partition bounds of these settings (``partition_end`` when the settings carry one)."""
    today = today or today_in_partition_timezone()
    end = getattr(settings, "partition_end", None)
    if isinstance(end, dt.date) and end < today:
        return Bounds(settings.partition_start, end, end_source="WEALTH_PARTITION_END")
    return Bounds(settings.partition_start, today)


def parse_date(option: str, text: str) -> dt.date:
    """A YYYY-MM-DD date, or an InputError naming the option."""
    value = (text or "").strip()
    if not _DATE.match(value):
        raise InputError(f"{option} {text!r}: not a date; expected YYYY-MM-DD (e.g. 2024-07-02)")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{option} {text!r}: not a calendar date ({exc}); expected YYYY-MM-DD") from None


def _weekday_name(day: dt.date) -> str:
    return day.strftime("%A")


def _is_session(day: dt.date) -> bool:
    return bool(calendars.open_exchanges(day))


def nearest_sessions(day: dt.date, bounds: Bounds, reach: int = 14) -> tuple[dt.date | None, dt.date | None]:
    """The last session before ``day`` and the first after it, inside the bounds (None when there is none)."""
    before = next((d for d in (day - dt.timedelta(n) for n in range(1, reach))
                   if bounds.start <= d <= bounds.end and _is_session(d)), None)
    after = next((d for d in (day + dt.timedelta(n) for n in range(1, reach))
                  if bounds.start <= d <= bounds.end and _is_session(d)), None)
    return before, after


def _nearest_text(day: dt.date, bounds: Bounds) -> str:
    before, after = nearest_sessions(day, bounds)
    if before is None and after is None:
        return "no session within two weeks inside the partitions"
    if before is None or after is None:
        only = before or after
        return f"the nearest session is {only} ({_weekday_name(only)})"
    nearest = before if (day - before) <= (after - day) else after
    other = after if nearest is before else before
    return f"the nearest session is {nearest} ({_weekday_name(nearest)}; also {other})"


def _check_bounds(option: str, day: dt.date, bounds: Bounds) -> None:
    if day < bounds.start:
        raise InputError(f"{option} {day}: before the first partition {bounds.start} ({bounds.start_source}); "
                         f"use a date from {bounds.start} to {bounds.end}")
    if day > bounds.end:
        what = "in the future" if bounds.end_source == "today" else f"after the last partition ({bounds.end_source})"
        raise InputError(f"{option} {day}: {what}; the last partition is {bounds.end}")


def check_partition_key(option: str, text: str, bounds: Bounds, *, single: bool) -> str:
    """A valid partition key for ``option``.

    Weekends are never partitions (the nearest session is named). A weekday closed on every listing
    exchange is a partition; it is refused only as a ``single`` partition, since running it alone
    would do nothing but record the closure.
    """
    day = parse_date(option, text)
    _check_bounds(option, day, bounds)
    if day.weekday() >= 5:
        raise InputError(f"{option} {day}: a {_weekday_name(day)}, not a trading session; {_nearest_text(day, bounds)}")
    if single and not _is_session(day):
        exchanges = ", ".join(calendars.EXCHANGE_CALENDAR_CODES)
        raise InputError(f"{option} {day}: every listing exchange ({exchanges}) is closed that day (holiday); "
                         f"{_nearest_text(day, bounds)}")
    return day.isoformat()


def check_range(start_option: str, start: str, end_option: str, end: str, bounds: Bounds) -> tuple[str, str]:
    """Validated inclusive range of partition keys (start <= end, both weekdays inside the bounds)."""
    first = check_partition_key(start_option, start, bounds, single=False)
    last = check_partition_key(end_option, end, bounds, single=False)
    if last < first:
        raise InputError(f"{end_option} {last} is before {start_option} {first}: the range is reversed; "
                         f"swap them ({start_option} {last} {end_option} {first})")
    return first, last


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else "none is close"


def asset_names(graph: object) -> dict[str, object]:
    """Every name a user may type for an asset: its full key path (``staging/stg_bars``) and its last part."""
    names: dict[str, object] = {}
    for key in graph.get_all_asset_keys():
        names.setdefault(key.to_user_string(), key)
        names.setdefault(key.path[-1], key)
    return names


def group_names(graph: object) -> set[str]:
    return {graph.get(key).group_name for key in graph.get_all_asset_keys() if graph.get(key).group_name}


def check_selection(text: str, graph: object, option: str = "--select"):
    """An ``AssetSelection`` for plain asset names or a Dagster selection string, checked against the graph.

    Unknown asset names and groups are refused with the closest known one (difflib).
    """
    import dagster as dg

    words = [w for w in (text or "").replace(",", " ").split() if w]
    if not words:
        raise InputError(f"{option} {text!r}: empty; give asset names, group:NAME, or '*' (wealth-pipeline list)")
    names = asset_names(graph)
    if all(re.fullmatch(r"[A-Za-z0-9_/]+", w) for w in words):
        keys = []
        for word in words:
            if word not in names:
                raise InputError(f"{option}: unknown asset {word!r}; {_suggest(word, names)} "
                                 "(wealth-pipeline list shows every asset)")
            keys.append(names[word])
        return dg.AssetSelection.assets(*keys)
    groups = group_names(graph)
    for kind, value in re.findall(r"\b(\w+):\"?([\w/.-]+)", text):
        if kind == "group" and value not in groups:
            raise InputError(f"{option}: unknown group {value!r}; {_suggest(value, groups)} "
                             f"(groups: {', '.join(sorted(groups))})")
        if kind == "key" and value not in names and "*" not in value:
            raise InputError(f"{option}: unknown asset key {value!r}; {_suggest(value, names)}")
        if kind not in _SELECTION_KINDS:
            raise InputError(f"{option}: unknown selection attribute {kind!r}; "
                             f"valid: {', '.join(_SELECTION_KINDS)}")
    bare = re.sub(r"\b\w+:\"?[\w/.*-]+\"?", " ", text)
    for word in re.findall(r"[A-Za-z_][\w/]*", bare):
        if word in ("and", "or", "not", "sinks", "roots"):
            continue
        if word not in names:
            raise InputError(f"{option}: unknown asset {word!r}; {_suggest(word, names)} "
                             "(wealth-pipeline list shows every asset)")
    try:
        selection = dg.AssetSelection.from_string(text)
        resolved = selection.resolve(graph)
    except Exception as exc:  # Dagster's parser raises several types; the message is what matters
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{option} {text!r}: not a valid asset selection ({first}); "
                         "e.g. 'raw_bars bars', 'group:ingest', 'bars+', '*'") from None
    if not resolved:
        raise InputError(f"{option} {text!r}: selects no asset (wealth-pipeline list shows every asset)")
    return selection


DEMO_RANGE_FILE = "demo-range.json"


def record_demo_range(home: Path, start: str, end: str) -> Path:
    """Keep the demo's session range in the state folder, so ``ui`` on that state bounds partitions by it."""
    path = Path(home) / DEMO_RANGE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"WEALTH_PARTITION_START": start, "WEALTH_PARTITION_END": end}) + "\n")
    return path


def demo_partition_env(home: Path, environ: dict[str, str]) -> dict[str, str]:
    """The partition bounds a demo recorded in ``home``, minus any the environment already sets.

    Without them the UI on the demo's state shows every session from the demo's end to today as
    missing; a variable the user set wins.
    """
    path = Path(home) / DEMO_RANGE_FILE
    if not path.exists():
        return {}
    try:
        recorded = json.loads(path.read_text())
    except ValueError:
        raise InputError(f"{path}: not the JSON a demo writes; delete it or run the demo again") from None
    return {name: str(value) for name, value in recorded.items()
            if name in ("WEALTH_PARTITION_START", "WEALTH_PARTITION_END") and not environ.get(name)}


def check_where(conditions: Iterable[str]) -> list[str]:
    """``export --where`` conditions, each ``COLUMN OP VALUE`` (rights/export.py's grammar); one line naming the bad one."""
    from wealth_pipeline.rights.export import ExportError, parse_where

    items = list(conditions)
    try:
        parse_where(items)
    except ExportError as exc:
        raise InputError(str(exc)) from None
    return items
