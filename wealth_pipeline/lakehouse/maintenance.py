"""Lakehouse table maintenance: compact small files, vacuum unreferenced ones, trim the commit log.

Every daily commit rewrites the files of the current year partition (a predicate overwrite is
copy-on-write), so a table accumulates removed files and, after backfills in chunks, several small
active files per year. ``maintain`` compacts each table's active files (delta-rs
``optimize.compact``: a ``remove``+``add`` commit that changes no row), then vacuums files removed
more than ``retention_days`` ago and drops commit files older than that (after a checkpoint).

Retention: ``delta.RETENTION_DAYS`` (90 days) by default. Inside it every version can be read with
``Lakehouse.read(..., as_of=...)``, which is what a model manifest needs to retrain on exactly its
inputs; a model older than the retention can still be loaded and scored, but not retrained
bit-for-bit from the lakehouse (``snapshot_from_manifest`` names the version it cannot read).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from wealth_pipeline.lakehouse import delta
from wealth_pipeline.lakehouse.store import DELTA_TIERS, Lakehouse

HOURS_PER_DAY = 24


@dataclass(frozen=True)
class TableMaintenance:
    """What maintenance did to one table."""

    table: str
    version_before: int | None
    version_after: int | None
    active_files_before: int
    active_files_after: int
    files_compacted: int
    files_vacuumed: int
    vacuum_skipped: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def maintain_table(lake: Lakehouse, tier: str, dataset: str, retention_days: int = delta.RETENTION_DAYS,
                   *, compact: bool = True) -> TableMaintenance:
    """Compact, vacuum (``retention_days``) and trim the log of one table; reads are unchanged."""
    if retention_days < 0:
        raise ValueError(f"retention_days must be >= 0, got {retention_days}")
    table = lake.table_key(tier, dataset)
    tables = lake.tables
    before_version = tables.version(table)
    before_files = tables.file_count(table)
    compacted = 0
    if compact and before_files > 1:
        metrics = tables.compact(table)
        compacted = int(metrics.get("numFilesRemoved", 0))
    handle = tables.open(table)
    if handle is not None:
        # Tables created before the retention was a table property get it now (a metadata commit).
        config = handle.metadata().configuration
        missing = {k: v for k, v in delta.TABLE_PROPERTIES.items() if config.get(k) != v}
        if missing:
            handle.alter.set_table_properties(missing)
    foreign = foreign_objects(lake, table)
    skipped = None
    if foreign:
        # A full vacuum deletes every file no commit references: these would be lost.
        skipped = (f"vacuum skipped: {len(foreign)} object(s) in the table folder are not Delta files "
                   f"(e.g. {lake.uri(foreign[0])}); run `wealth-pipeline lakehouse migrate` or move them")
        vacuumed = []
    else:
        vacuumed = tables.vacuum(table, retention_days * HOURS_PER_DAY)
    tables.cleanup_log(table)
    return TableMaintenance(lake.table_uri(tier, dataset), before_version, tables.version(table), before_files,
                            tables.file_count(table), compacted, len(vacuumed), skipped)


def foreign_objects(lake: Lakehouse, table: str) -> list[str]:
    """Objects under a table's folder that are not its log or data files (old ``date=`` parquet, JSON, ...)."""
    prefix = f"{table}/"
    foreign = []
    for key in lake.store.list_keys(prefix):
        rest = key[len(prefix):]
        if rest.startswith("_delta_log/"):
            continue
        if rest.endswith(".parquet") and rest.startswith(f"{delta.YEAR_COLUMN}=") and "/date=" not in f"/{rest}":
            continue
        nested = rest.split("/", 1)[0]
        if "/" in rest and not nested.startswith(f"{delta.YEAR_COLUMN}=") and lake.store.exists(
                f"{table}/{nested}/_delta_log/00000000000000000000.json"):
            continue  # a nested table (models/forecaster/{id}/oos_predictions inside a folder is not one)
        foreign.append(key)
    return foreign


def maintain(lake: Lakehouse, retention_days: int = delta.RETENTION_DAYS, *,
             tiers: tuple[str, ...] = tuple(sorted(DELTA_TIERS))) -> list[TableMaintenance]:
    """``maintain_table`` for every Delta table of ``tiers``."""
    done = []
    for tier in tiers:
        for dataset in lake.table_names(tier):
            done.append(maintain_table(lake, tier, dataset, retention_days))
    return done
