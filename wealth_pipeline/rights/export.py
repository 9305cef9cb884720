"""Licensed exports of a mart: only what the rights registry and the entitlements allow, with attributions.

:func:`export_mart` reads ``marts.<mart>`` as a BI login (so row-level security applies: a login
exports only its own portfolios), traces every row to its providers (the lineage of the warehouse
tables the mart is built from, on the row's ``session_date``), leaves out the rows that depend on a
metadata-only provider, and writes the file only when every remaining provider is allowed or its
licence is held; otherwise it raises :class:`ExportRefused` naming the restricted providers and
the missing licences, having written nothing. The file carries the attributions (CSV: ``#`` header
lines; parquet: key-value metadata ``wealth.rights``; both: a ``<file>.rights.json`` sidecar) and,
where a provider requires one, a ``watermark`` column. Every attempt, written or refused, is an
``ops.exports`` row written through the pipeline's connection (BI logins cannot write ``ops``).

``--where`` conditions are ``column OP value`` with OP one of ``= != < <= > >=``; the column must be
one of the mart's, the value is a bound parameter: nothing from the user becomes SQL text.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from wealth_pipeline.rights import lineage, registry

FORMATS: tuple[str, ...] = ("csv", "parquet")
OPERATORS: tuple[str, ...] = ("!=", "<=", ">=", "=", "<", ">")
DATE_COLUMN = "session_date"
UNKNOWN = "unknown"  # lineage missing: not a registry key, so the export is refused
PARQUET_METADATA_KEY = b"wealth.rights"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|<=|>=|=|<|>)\s*(.*?)\s*$", re.S)


class ExportError(ValueError):
    """An export input that cannot be used (mart, format, path, condition): one line naming it."""


class ExportRefused(PermissionError):
    """The rights registry and the entitlements do not allow the export; nothing was written."""


@dataclass(frozen=True)
class Condition:
    """One ``column OP value`` filter; the value is always a bound parameter."""

    column: str
    operator: str
    value: str


def parse_where(conditions: Iterable[str]) -> list[Condition]:
    """Conditions from ``column OP value`` strings; :class:`ExportError` naming the bad one."""
    parsed = []
    for text in conditions:
        match = _CONDITION.match(text or "")
        if not match or not _IDENTIFIER.match(match.group(1)):
            raise ExportError(
                f"--where {text!r}: expected COLUMN OP VALUE with a lowercase column name and OP one of "
                f"{' '.join(OPERATORS)} (e.g. --where symbol=AAPL --where session_date>=2024-01-02)"
            )
        value = match.group(3)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        parsed.append(Condition(match.group(1), match.group(2), value))
    return parsed


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and the ``ops.exports`` row that records it."""

    path: Path
    sidecar: Path
    rows: int
    excluded_rows: int
    sources: tuple[str, ...]
    attributions: dict[str, str]
    watermark: str | None
    exported_by: str
    export_id: int
    excluded_sources: tuple[str, ...] = ()
    untracked_inputs: tuple[str, ...] = field(default=())


def _mart_columns(conn: psycopg.Connection, mart: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (f"marts.{mart}",),
    ).fetchall()
    return dict(rows)


def _query(
    mart: str, conditions: Sequence[Condition], columns: Mapping[str, str]
) -> tuple[sql.Composed, list[str]]:
    where = [
        sql.SQL("{} {} %s::{}").format(
            sql.Identifier(c.column), sql.SQL(c.operator), sql.SQL(_cast(columns[c.column]))
        )
        for c in conditions
    ]
    query = sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier("marts"), sql.Identifier(mart))
    if where:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
    order = [sql.Identifier(c) for c in columns][: min(3, len(columns))]
    query += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(order)
    return query, [c.value for c in conditions]


def _cast(type_name: str) -> str:
    """The parameter's cast: the column's own type name from the catalogue (never user text)."""
    base = type_name.split("(")[0].strip()
    if not re.match(r"^[a-z][a-z0-9 _]*(\[\])?$", base):
        return "text"
    return base


def _entitlements(conn: psycopg.Connection, login: str) -> set[str]:
    rows = conn.execute(
        "SELECT licence FROM ref.entitlements WHERE grantee IN (%s, '*') "
        "AND (valid_until IS NULL OR valid_until >= current_date)",
        (login,),
    ).fetchall()
    return {r[0] for r in rows}


def datasets_of_tables(tables: Iterable[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Warehouse table -> dataset name for the dated datasets (lineage is kept per session for them),
    and the tables it is not kept for."""
    from wealth_pipeline.defs import datasets

    by_table = {d.table: d for d in datasets.REGISTRY.values() if d.table}
    tracked, untracked = {}, []
    for table in tables:
        dataset = by_table.get(table)
        if dataset is not None and dataset.date_column is not None:
            tracked[table] = dataset.name
        else:
            untracked.append(table)
    return tracked, tuple(sorted(untracked))


def _audit(
    conn: psycopg.Connection,
    *,
    login: str,
    mart: str,
    conditions: Sequence[Condition],
    fmt: str,
    out: Path,
    outcome: str,
    reason: str | None = None,
    sources: Sequence[str] = (),
    rows: int = 0,
    excluded: int = 0,
    watermark: str | None = None,
) -> int:
    filters = [{"column": c.column, "operator": c.operator, "value": c.value} for c in conditions]
    row = conn.execute(
        "INSERT INTO ops.exports (exported_by, mart, filters, format, out_path, outcome, reason, sources, row_count, "
        "excluded_rows, watermark) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING export_id",
        (
            login,
            mart,
            Jsonb(filters),
            fmt,
            str(out),
            outcome,
            reason,
            list(sources),
            rows,
            excluded,
            watermark,
        ),
    ).fetchone()
    return int(row[0])


def _atomic_write(path: Path, write: Any) -> Path:
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(Path(tmp))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def export_mart(
    mart: str,
    out: str | Path,
    fmt: str,
    *,
    read_url: str,
    audit_url: str,
    where: Iterable[str] = (),
    inputs: Iterable[str] | None = None,
    manifest: str | Path | None = None,
    rights: registry.Registry | None = None,
    env: Mapping[str, str] | None = None,
    export_type: str | None = None,
) -> ExportResult:
    """Export ``marts.<mart>`` to ``out`` as ``fmt`` (csv or parquet) when its sources' licences allow it.

    ``read_url``: a BI login (its row-level security decides the portfolio rows). ``audit_url``: the
    pipeline's connection (lineage, entitlements of the login, the ``ops.exports`` row). ``inputs``:
    the warehouse tables the mart is built from (default: from the dbt ``manifest``).
    ``export_type``: the registry's export type (default: ``fmt``). Raises :class:`ExportError` on
    a bad input and :class:`ExportRefused` when the rights do not allow it; neither writes a file.
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    export_type = export_type or fmt
    if not _IDENTIFIER.match(mart or ""):
        raise ExportError(f"--mart {mart!r}: not a mart name (lowercase letters, digits and '_')")
    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():
        raise ExportError(f"--out {str(out)!r}: expected a file path in an existing folder")
    conditions = parse_where(where)
    rights = rights or registry.load()
    held_env = registry.entitlements_from_env(rights, env)
    if inputs is None:
        if manifest is None:
            raise ExportError("export: the mart's inputs need the dbt manifest (or pass inputs=)")
        try:
            inputs = lineage.mart_inputs(manifest, mart)
        except KeyError as exc:
            raise ExportError(f"--mart {mart!r}: {exc.args[0]}") from None
    tracked, untracked = datasets_of_tables(inputs)

    with psycopg.connect(read_url) as reader:
        login = str(reader.execute("SELECT session_user").fetchone()[0])
        columns = _mart_columns(reader, mart)
        if not columns:
            raise ExportError(f"--mart {mart!r}: no relation marts.{mart} visible to {login}")
        unknown = [c.column for c in conditions if c.column not in columns]
        if unknown:
            raise ExportError(
                f"--where: column {unknown[0]!r} is not a column of marts.{mart}; expected one of "
                f"{', '.join(columns)}"
            )
        query, params = _query(mart, conditions, columns)
        try:
            cur = reader.execute(query, params)
        except psycopg.errors.DataError as exc:  # a value that is not of the column's type
            reason = (str(exc).strip().splitlines() or ["invalid value"])[0]
            raise ExportError(f"--where: {reason}") from None
        names = [d.name for d in cur.description]
        frame = pl.DataFrame(cur.fetchall(), schema=names, orient="row", infer_schema_length=None)

    with psycopg.connect(audit_url) as auditor:

        def refuse(reason: str, sources: Sequence[str] = ()) -> ExportRefused:
            _audit(
                auditor,
                login=login,
                mart=mart,
                conditions=conditions,
                fmt=fmt,
                out=out,
                outcome="refused",
                reason=reason,
                sources=sources,
            )
            auditor.commit()
            return ExportRefused(f"export of marts.{mart} as {login} refused: {reason}; nothing was written")

        row_sources: dict[Any, tuple[str, ...]] = {}
        missing_lineage: dict[str, list[dt.date]] = {}
        unknown_inputs: dict[str, list[dt.date]] = {}
        if tracked:
            if DATE_COLUMN not in frame.columns:
                raise refuse(
                    f"marts.{mart} has no {DATE_COLUMN} column, so its rows cannot be traced to providers"
                )
            days = sorted({d for d in frame[DATE_COLUMN].to_list() if d is not None})
            stored = lineage.read(auditor, sorted(set(tracked.values())), days[0], days[-1]) if days else {}
            for day in days:
                sources: set[str] = set()
                for name in sorted(set(tracked.values())):
                    found = stored.get(name, {}).get(day)
                    if found is None:
                        missing_lineage.setdefault(name, []).append(day)
                        sources.add(UNKNOWN)
                    else:
                        if UNKNOWN in found:
                            unknown_inputs.setdefault(name, []).append(day)
                        sources.update(found)
                row_sources[day] = tuple(sorted(sources))

        def sessions(found: dict[str, list[dt.date]]) -> str:
            return "; ".join(
                f"{name} on {len(d)} session(s) from {d[0]} to {d[-1]}" for name, d in sorted(found.items())
            )

        if missing_lineage:
            raise refuse(
                f"no source lineage recorded for {sessions(missing_lineage)} (materialize those partitions again)",
                [UNKNOWN],
            )
        if unknown_inputs:
            raise refuse(
                f"the lineage of {sessions(unknown_inputs)} has an input whose sources were never recorded "
                "(provider `unknown`: materialize its inputs, then those partitions, again)",
                [UNKNOWN],
            )
        all_sources = sorted({s for v in row_sources.values() for s in v})
        excluded_sources = registry.excluded_providers(rights, all_sources, export_type)
        excluded_days = {d for d, s in row_sources.items() if excluded_sources & set(s)}
        if excluded_days:
            keep = ~pl.col(DATE_COLUMN).is_in(sorted(excluded_days))
            excluded_rows = frame.filter(~keep).height
            frame = frame.filter(keep)
        else:
            excluded_rows = 0
        kept_sources = sorted({s for d, v in row_sources.items() if d not in excluded_days for s in v})
        held = held_env | _entitlements(auditor, login)
        decision = registry.decide(rights, kept_sources, export_type, held)
        if not decision.allowed:
            raise refuse(decision.refusal(), kept_sources)

        watermark = " | ".join(decision.watermarks[k] for k in sorted(decision.watermarks)) or None
        if watermark is not None:
            frame = frame.with_columns(pl.lit(watermark).alias("watermark"))
        exported_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        export_id = _audit(
            auditor,
            login=login,
            mart=mart,
            conditions=conditions,
            fmt=fmt,
            out=out,
            outcome="written",
            sources=kept_sources,
            rows=frame.height,
            excluded=excluded_rows,
            watermark=watermark,
        )
        rights_doc = {
            "export_id": export_id,
            "mart": f"marts.{mart}",
            "exported_by": login,
            "exported_at": exported_at.isoformat(),
            "format": fmt,
            "export_type": export_type,
            "rows": frame.height,
            "filters": [f"{c.column} {c.operator} {c.value}" for c in conditions],
            "sources": kept_sources,
            "attributions": decision.attributions,
            "watermark": watermark,
            "excluded_sources": sorted(excluded_sources),
            "excluded_rows": excluded_rows,
            "untracked_inputs": list(untracked),
        }
        sidecar = out.with_name(out.name + ".rights.json")
        data_tmp = _atomic_write(out, lambda tmp: _write(frame, tmp, fmt, rights_doc))
        try:
            side_tmp = _atomic_write(
                sidecar, lambda tmp: tmp.write_text(json.dumps(rights_doc, indent=2) + "\n", encoding="utf-8")
            )
        except BaseException:
            data_tmp.unlink(missing_ok=True)
            raise
        try:
            auditor.commit()
        except BaseException:
            data_tmp.unlink(missing_ok=True)
            side_tmp.unlink(missing_ok=True)
            raise
        os.replace(side_tmp, sidecar)
        os.replace(data_tmp, out)
    return ExportResult(
        out,
        sidecar,
        frame.height,
        excluded_rows,
        tuple(kept_sources),
        decision.attributions,
        watermark,
        login,
        export_id,
        tuple(sorted(excluded_sources)),
        untracked,
    )


def _write(frame: pl.DataFrame, path: Path, fmt: str, rights_doc: Mapping[str, Any]) -> None:
    if fmt == "csv":
        lines = [
            f"# wealth_pipeline export {rights_doc['export_id']} of {rights_doc['mart']} by "
            f"{rights_doc['exported_by']} at {rights_doc['exported_at']}",
            f"# sources: {', '.join(rights_doc['sources']) or 'none'}",
        ]
        lines += [
            f"# attribution ({key}): {text}" for key, text in sorted(rights_doc["attributions"].items())
        ]
        if rights_doc["watermark"]:
            lines.append(f"# watermark: {rights_doc['watermark']}")
        if rights_doc["excluded_rows"]:
            lines.append(
                f"# excluded: {rights_doc['excluded_rows']} row(s) depending on metadata-only "
                f"provider(s) {', '.join(rights_doc['excluded_sources'])}"
            )
        with path.open("w", encoding="utf-8", newline="") as handle:
            handle.write("\n".join(line.replace("\n", " ") for line in lines) + "\n")
            frame.write_csv(handle)
        return
    import pyarrow.parquet as pq

    table = frame.to_arrow()
    metadata = dict(table.schema.metadata or {})
    metadata[PARQUET_METADATA_KEY] = json.dumps(rights_doc).encode()
    pq.write_table(table.replace_schema_metadata(metadata), path)
