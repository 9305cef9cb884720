"""Portfolio reference data: users, portfolios and transactions from CSV files, validated row by row.

The layout is documented in ``docs/portfolio-file-layouts.md``. Every problem is reported with the
file, the line (1 = header) and the field it concerns. A portfolio with any bad transaction row is
*skipped* as a whole (its rows are quarantined), so the other portfolios still compute: a portfolio
computed from part of its transactions would be silently wrong.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl

TRANSACTION_TYPES: tuple[str, ...] = ("buy", "sell", "dividend", "deposit", "withdrawal", "fee")
SECURITY_TYPES = frozenset({"buy", "sell", "dividend"})
CASH_TYPES = frozenset({"deposit", "withdrawal", "fee"})
EXTERNAL_FLOW_TYPES = frozenset({"deposit", "withdrawal"})
_TYPE_ALIASES = {"cash dividend": "dividend", "cash_dividend": "dividend", "div": "dividend"}
_CURRENCY = re.compile(r"^[A-Z]{3}$")

USER_COLUMNS: tuple[str, ...] = ("user_id", "display_name")
PORTFOLIO_COLUMNS: tuple[str, ...] = ("portfolio_id", "owner_id", "name", "base_currency", "benchmark")
TRANSACTION_COLUMNS: tuple[str, ...] = (
    "portfolio_id", "transaction_id", "trade_date", "type", "symbol", "quantity", "price", "amount", "currency",
)

USERS_SCHEMA: dict[str, pl.DataType] = {"user_id": pl.Utf8(), "display_name": pl.Utf8()}
PORTFOLIOS_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.Utf8(), "owner_id": pl.Utf8(), "name": pl.Utf8(), "base_currency": pl.Utf8(),
    "benchmark": pl.Utf8(), "allow_short": pl.Boolean(),
}
TRANSACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "portfolio_id": pl.Utf8(), "transaction_id": pl.Utf8(), "trade_date": pl.Date(), "type": pl.Utf8(),
    "symbol": pl.Utf8(), "quantity": pl.Float64(), "price": pl.Float64(), "amount": pl.Float64(),
    "currency": pl.Utf8(), "source_file": pl.Utf8(), "source_line": pl.Int64(),
}
ERRORS_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.Utf8(), "line": pl.Int64(), "field": pl.Utf8(), "portfolio_id": pl.Utf8(), "reason": pl.Utf8(),
}


class PortfolioReferenceError(ValueError):
    """A reference file that cannot be used at all (unreadable, missing a required column)."""


class PortfolioInputError(ValueError):
    """One bad input row, naming its file, line and field."""

    def __init__(self, file: str, line: int | None, field: str | None, reason: str, portfolio_id: str | None = None):
        self.file, self.line, self.field, self.reason, self.portfolio_id = file, line, field, reason, portfolio_id
        where = f"{file}" + (f" line {line}" if line is not None else "") + (f" field {field!r}" if field else "")
        super().__init__(f"{where}: {reason}")

    def as_row(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "field": self.field, "portfolio_id": self.portfolio_id,
                "reason": self.reason}


@dataclass
class ReferenceData:
    """Validated reference data; ``errors`` lists every rejected row, ``skipped`` the portfolios left out."""

    users: pl.DataFrame
    portfolios: pl.DataFrame
    transactions: pl.DataFrame
    errors: pl.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def without(self, portfolio_ids: dict[str, str]) -> ReferenceData:
        """A copy with more portfolios skipped (``{portfolio_id: reason}``)."""
        skipped = {**self.skipped, **portfolio_ids}
        keep = ~pl.col("portfolio_id").is_in(list(skipped))
        return ReferenceData(self.users, self.portfolios.filter(keep), self.transactions.filter(keep), self.errors,
                             skipped, self.source)


def _read_csv(name: str, data: bytes, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file as (line number, {column: stripped text}); header names are case-insensitive."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PortfolioReferenceError(f"{name}: not UTF-8 text ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise PortfolioReferenceError(f"{name}: empty file (expected a header line)") from None
    names = [h.strip().lower() for h in header]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PortfolioReferenceError(f"{name} line 1: duplicate column(s) {dupes}")
    missing = [c for c in required if c not in names]
    if missing:
        raise PortfolioReferenceError(f"{name} line 1: missing required column(s) {missing}; expected {list(required)}")
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        line = reader.line_num
        if len(values) != len(names):
            rows.append((line, {"__error__": f"expected {len(names)} fields, found {len(values)}"}))
            continue
        rows.append((line, {n: v.strip() for n, v in zip(names, values, strict=True)}))
    return rows


def _number(row: dict[str, str], name: str, file: str, line: int, pid: str | None, *, required: bool,
            positive: bool = True) -> float | None:
    text = row.get(name, "")
    if not text:
        if required:
            raise PortfolioInputError(file, line, name, "is required for this transaction type", pid)
        return None
    try:
        value = float(text.replace(",", "")) if re.fullmatch(r"[-+]?[\d,]*\.?\d+([eE][-+]?\d+)?", text) else float("nan")
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise PortfolioInputError(file, line, name, f"{text!r} is not a number", pid)
    if positive and value <= 0:
        raise PortfolioInputError(file, line, name, f"must be > 0, got {text}", pid)
    return value


def parse_users(name: str, data: bytes) -> tuple[pl.DataFrame, list[PortfolioInputError]]:
    """users.csv: ``user_id, display_name``."""
    rows, errors, seen = [], [], {}
    for line, row in _read_csv(name, data, ("user_id",)):
        if "__error__" in row:
            errors.append(PortfolioInputError(name, line, None, row["__error__"]))
            continue
        uid = row.get("user_id", "")
        if not uid:
            errors.append(PortfolioInputError(name, line, "user_id", "is empty"))
        elif uid in seen:
            errors.append(PortfolioInputError(name, line, "user_id", f"duplicate user {uid!r} (first on line {seen[uid]})"))
        else:
            seen[uid] = line
            rows.append({"user_id": uid, "display_name": row.get("display_name") or uid})
    return pl.DataFrame(rows, schema=USERS_SCHEMA), errors


def parse_portfolios(name: str, data: bytes, user_ids: set[str]) -> tuple[pl.DataFrame, list[PortfolioInputError]]:
    """portfolios.csv: ``portfolio_id, owner_id, name, base_currency, benchmark[, allow_short]``."""
    rows, errors, seen = [], [], {}
    for line, row in _read_csv(name, data, ("portfolio_id", "owner_id", "base_currency")):
        if "__error__" in row:
            errors.append(PortfolioInputError(name, line, None, row["__error__"]))
            continue
        pid = row.get("portfolio_id", "")
        try:
            if not pid:
                raise PortfolioInputError(name, line, "portfolio_id", "is empty")
            if pid in seen:
                raise PortfolioInputError(name, line, "portfolio_id", f"duplicate portfolio {pid!r} (first on line {seen[pid]})", pid)
            if row.get("owner_id", "") not in user_ids:
                raise PortfolioInputError(name, line, "owner_id", f"unknown user {row.get('owner_id', '')!r} (not in users.csv)", pid)
            base = row.get("base_currency", "").upper()
            if not _CURRENCY.match(base):
                raise PortfolioInputError(name, line, "base_currency", f"{row.get('base_currency')!r} is not a 3-letter ISO currency", pid)
            short = row.get("allow_short", "").lower()
            if short not in ("", "true", "false", "yes", "no", "1", "0"):
                raise PortfolioInputError(name, line, "allow_short", f"{short!r} is not a boolean (true/false)", pid)
        except PortfolioInputError as exc:
            errors.append(exc)
            continue
        seen[pid] = line
        rows.append({"portfolio_id": pid, "owner_id": row["owner_id"], "name": row.get("name") or pid,
                     "base_currency": base, "benchmark": row.get("benchmark") or None,
                     "allow_short": short in ("true", "yes", "1")})
    return pl.DataFrame(rows, schema=PORTFOLIOS_SCHEMA), errors


def parse_transactions(
    files: Sequence[tuple[str, bytes]],
    portfolio_ids: set[str],
    securities: pl.DataFrame,
    is_session: Callable[[str, dt.date], bool],
) -> tuple[pl.DataFrame, list[PortfolioInputError]]:
    """Transaction files, validated against the portfolios and the symbol master.

    ``securities``: ``symbol, exchange, currency``. ``is_session(exchange, day)``: the exchange
    calendar. Security transactions must fall on a session of the symbol's listing exchange; cash
    transactions on a weekday when at least one listing exchange is open (a valuation day).
    """
    listings = {s: (e, c) for s, e, c in securities.select("symbol", "exchange", "currency").iter_rows()}
    exchanges = sorted({e for e, _ in listings.values()})
    rows: list[dict[str, object]] = []
    errors: list[PortfolioInputError] = []
    seen: dict[tuple[str, str], str] = {}
    for name, data in files:
        for line, row in _read_csv(name, data, TRANSACTION_COLUMNS):
            pid = row.get("portfolio_id") or None
            try:
                if "__error__" in row:
                    raise PortfolioInputError(name, line, None, row["__error__"], pid)
                if pid not in portfolio_ids:
                    raise PortfolioInputError(name, line, "portfolio_id", f"unknown portfolio {pid!r} (not in portfolios.csv)", pid)
                tid = row["transaction_id"]
                if not tid:
                    raise PortfolioInputError(name, line, "transaction_id", "is empty", pid)
                if (pid, tid) in seen:
                    raise PortfolioInputError(name, line, "transaction_id",
                                              f"duplicate transaction id {tid!r} in portfolio {pid!r} (first at {seen[(pid, tid)]})", pid)
                seen[(pid, tid)] = f"{name} line {line}"
                kind = _TYPE_ALIASES.get(row["type"].lower(), row["type"].lower())
                if kind not in TRANSACTION_TYPES:
                    raise PortfolioInputError(name, line, "type", f"{row['type']!r} is not one of {list(TRANSACTION_TYPES)}", pid)
                try:
                    day = dt.date.fromisoformat(row["trade_date"])
                except ValueError:
                    raise PortfolioInputError(name, line, "trade_date", f"{row['trade_date']!r} is not a date YYYY-MM-DD", pid) from None
                currency = row["currency"].upper()
                if not _CURRENCY.match(currency):
                    raise PortfolioInputError(name, line, "currency", f"{row['currency']!r} is not a 3-letter ISO currency", pid)
                symbol = row["symbol"] or None
                quantity = price = None
                if kind in SECURITY_TYPES:
                    if symbol is None:
                        raise PortfolioInputError(name, line, "symbol", f"is required for a {kind}", pid)
                    if symbol not in listings:
                        raise PortfolioInputError(name, line, "symbol", f"unknown symbol {symbol!r} (not in the symbol master)", pid)
                    exchange, listed = listings[symbol]
                    if currency != listed:
                        raise PortfolioInputError(name, line, "currency",
                                                  f"currency mismatch: {symbol} trades in {listed}, the row says {currency}", pid)
                    if not is_session(exchange, day):
                        raise PortfolioInputError(name, line, "trade_date",
                                                  f"{day} ({day:%A}) is not a {exchange} session for {symbol}", pid)
                    if kind in ("buy", "sell"):
                        quantity = _number(row, "quantity", name, line, pid, required=True)
                        price = _number(row, "price", name, line, pid, required=True)
                        amount = _number(row, "amount", name, line, pid, required=False)
                        if amount is None:
                            amount = quantity * price  # type: ignore[operator]
                    else:
                        amount = _number(row, "amount", name, line, pid, required=True)
                else:
                    if symbol is not None:
                        raise PortfolioInputError(name, line, "symbol", f"must be empty for a {kind}", pid)
                    if not any(is_session(e, day) for e in exchanges):
                        raise PortfolioInputError(name, line, "trade_date",
                                                  f"{day} ({day:%A}) is not a session of any listing exchange", pid)
                    amount = _number(row, "amount", name, line, pid, required=True)
            except PortfolioInputError as exc:
                errors.append(exc)
                continue
            rows.append({"portfolio_id": pid, "transaction_id": tid, "trade_date": day, "type": kind, "symbol": symbol,
                         "quantity": quantity, "price": price, "amount": amount, "currency": currency,
                         "source_file": name, "source_line": line})
    return pl.DataFrame(rows, schema=TRANSACTIONS_SCHEMA), errors


def load_reference(
    users: tuple[str, bytes],
    portfolios: tuple[str, bytes],
    transactions: Sequence[tuple[str, bytes]],
    securities: pl.DataFrame,
    is_session: Callable[[str, dt.date], bool],
    source: str = "",
) -> ReferenceData:
    """Parse and validate the three files; portfolios with any bad row are skipped (see ``errors``)."""
    user_frame, errors = parse_users(*users)
    portfolio_frame, more = parse_portfolios(*portfolios, set(user_frame["user_id"].to_list()))
    errors += more
    txns, more = parse_transactions(transactions, set(portfolio_frame["portfolio_id"].to_list()), securities, is_session)
    errors += more
    skipped: dict[str, str] = {}
    for err in errors:
        if err.portfolio_id is not None and err.portfolio_id in set(portfolio_frame["portfolio_id"].to_list()):
            skipped.setdefault(err.portfolio_id, str(err))
    error_frame = pl.DataFrame([e.as_row() for e in errors], schema=ERRORS_SCHEMA)
    return ReferenceData(user_frame, portfolio_frame, txns, error_frame, {}, source).without(skipped)
