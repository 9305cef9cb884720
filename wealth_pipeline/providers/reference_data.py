"""Real reference data offline: the S&P 500 constituents from ``pytickersymbols`` plus TSX listings.

``pytickersymbols`` (MIT, PyPI) ships, inside the wheel, index constituent lists scraped from public
sources: for the S&P 500 (1.17.10: 503 rows) each constituent's name, ticker, ISINs (451 rows have
at least one), industries (with the GICS sector among them), headquarters, and its symbols per
venue (Google/Yahoo codes with a currency). What the pipeline takes from it, and how:

* ``symbol``: the package's ticker (``BRK.B`` style); ``exchange``: the venue of its USD Google code
  (``NYSE:``/``NASDAQ:``), else the Wikipedia "traded as" text, else the short override table below
  (six names ship neither); CBOE (listed on Cboe BZX, a venue with no calendar here) is left out.
* ``isin``: the one ISIN when the package lists exactly one with a valid check digit; share classes
  and re-domiciled issuers that list several are resolved by ``_ISIN_OVERRIDES`` (each checked
  against its CUSIP and check digit), as is AIZ (Assurant), which the package ships under Arthur J.
  Gallagher's name and ISIN; otherwise null. Two symbols sharing an ISIN stop the load. ``cusip`` is derived from US/CA ISINs.
* ``sector``: the GICS sector name among its industries (ties: ``_SECTOR_PREFERENCE``);
  ``industry``: the alphabetically first non-sector industry; ``country``: the ISIN's prefix.
* ``currency``/``dividend_currency``: USD; ``security_type``: STOCK; ``mic``: XNYS/XNAS/XTSE.

The TSX listings (``_TSX``) are typed in here: the demo portfolio's TD.TO and five large Canadian
banks/railways/energy names, with their real ISINs (verified by the tests' check digits).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import metadata

import polars as pl

from wealth_pipeline.core import identifiers

SOURCE = "pytickersymbols"
INDEX = "S&P 500"
MIC = {"NYSE": "XNYS", "NASDAQ": "XNAS", "TSX": "XTSE"}
GICS_SECTORS: tuple[str, ...] = (
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Information Technology",
    "Materials",
    "Real Estate",
    "Utilities",
)
# When the package tags a name with two sectors, the first of these wins (GICS puts regulated
# utilities in Utilities, REITs in Real Estate, consumer electronics in Consumer Discretionary).
_SECTOR_PREFERENCE = (
    "Utilities",
    "Real Estate",
    "Consumer Discretionary",
    "Health Care",
    "Financials",
    "Industrials",
    "Energy",
)
_EXCHANGE_OVERRIDES = {
    "GDDY": "NYSE",
    "PODD": "NASDAQ",
    "NSC": "NYSE",
    "Q": "NYSE",
    "LUV": "NYSE",
    "UAL": "NASDAQ",
}
_EXCLUDED = {"CBOE": "listed on Cboe BZX, which has no exchange calendar here"}
_ISIN_OVERRIDES = {
    "GOOGL": "US02079K3059",
    "GOOG": "US02079K1079",
    "FOXA": "US35137L1052",
    "FOX": "US35137L2043",
    "NWSA": "US65249B1098",
    "NWS": "US65249B2088",
    "GE": "US3696043013",
    "BLK": "US09290D1019",
    "STE": "IE00BFY8C754",
    "CCL": "PA1436583006",
    "AIZ": "US04621X1081",  # 1.17.10 gives Assurant Arthur J. Gallagher's name and ISIN (AJG's)
}
_NAME_OVERRIDES = {"AIZ": "Assurant"}
# symbol, name, sector, industry, isin
_TSX: tuple[tuple[str, str, str, str, str], ...] = (
    ("TD.TO", "Toronto-Dominion Bank", "Financials", "Banks", "CA8911605092"),
    ("RY.TO", "Royal Bank of Canada", "Financials", "Banks", "CA7800871021"),
    ("BNS.TO", "Bank of Nova Scotia", "Financials", "Banks", "CA0641491075"),
    ("BMO.TO", "Bank of Montreal", "Financials", "Banks", "CA0636711016"),
    ("CNR.TO", "Canadian National Railway", "Industrials", "Railroads", "CA1363751027"),
    ("ENB.TO", "Enbridge", "Energy", "Oil & Gas Storage & Transportation", "CA29250N1050"),
)
COLUMNS: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "name": pl.Utf8(),
    "exchange": pl.Utf8(),
    "currency": pl.Utf8(),
    "sector": pl.Utf8(),
    "industry": pl.Utf8(),
    "isin": pl.Utf8(),
    "cusip": pl.Utf8(),
    "mic": pl.Utf8(),
    "country": pl.Utf8(),
    "security_type": pl.Utf8(),
    "dividend_currency": pl.Utf8(),
    "in_sp500": pl.Boolean(),
}


def version() -> str:
    """The installed pytickersymbols version (cited in metadata)."""
    return metadata.version(SOURCE)


def _exchange(stock: dict) -> str | None:
    venues = [
        s["google"].split(":")[0]
        for s in stock.get("symbols", [])
        if s.get("currency") == "USD" and ":" in s.get("google", "")
    ]
    if "NYSE" in venues:
        return "NYSE"
    if "NASDAQ" in venues:
        return "NASDAQ"
    traded_as = (stock.get("metadata") or {}).get("traded_as") or ""
    if re.search("nasdaq", traded_as, re.IGNORECASE):
        return "NASDAQ"
    if "NYSE" in traded_as:
        return "NYSE"
    return _EXCHANGE_OVERRIDES.get(stock["symbol"])


def _isin(stock: dict) -> str | None:
    if stock["symbol"] in _ISIN_OVERRIDES:
        return _ISIN_OVERRIDES[stock["symbol"]]
    valid = [i for i in stock.get("isins") or [] if identifiers.is_valid_isin(i)]
    return valid[0] if len(valid) == 1 else None


def _sector(industries: list[str]) -> str | None:
    found = [s for s in GICS_SECTORS if s in industries]
    if len(found) > 1:
        found = [s for s in _SECTOR_PREFERENCE if s in found][:1] or found[:1]
    return found[0] if found else None


@lru_cache(maxsize=1)
def listings() -> pl.DataFrame:
    """The S&P 500 constituents the package ships (less ``_EXCLUDED``) and the TSX listings, by symbol."""
    from pytickersymbols import PyTickerSymbols

    rows = []
    for stock in PyTickerSymbols().get_stocks_by_index(INDEX):
        symbol = stock["symbol"]
        if symbol in _EXCLUDED:
            continue
        exchange = _exchange(stock)
        if exchange is None:
            raise RuntimeError(
                f"pytickersymbols {version()}: no listing exchange for {symbol}; add it to "
                "_EXCHANGE_OVERRIDES or _EXCLUDED in providers/reference_data.py"
            )
        industries = stock.get("industries") or []
        isin = _isin(stock)
        rows.append(
            {
                "symbol": symbol,
                "name": _NAME_OVERRIDES.get(symbol, stock["name"]),
                "exchange": exchange,
                "currency": "USD",
                "sector": _sector(industries),
                "industry": next((i for i in sorted(industries) if i not in GICS_SECTORS), None),
                "isin": isin,
                "in_sp500": True,
            }
        )
    for symbol, name, sector, industry, isin in _TSX:
        rows.append(
            {
                "symbol": symbol,
                "name": name,
                "exchange": "TSX",
                "currency": "CAD",
                "sector": sector,
                "industry": industry,
                "isin": isin,
                "in_sp500": False,
            }
        )
    frame = pl.DataFrame(rows, schema_overrides={"sector": pl.Utf8, "industry": pl.Utf8, "isin": pl.Utf8})
    frame = frame.with_columns(
        pl.col("isin").map_elements(identifiers.cusip_from_isin, return_dtype=pl.Utf8).alias("cusip"),
        pl.col("exchange").replace_strict(MIC, return_dtype=pl.Utf8).alias("mic"),
        pl.col("isin").str.slice(0, 2).alias("country"),
        pl.lit("STOCK").alias("security_type"),
        pl.col("currency").alias("dividend_currency"),
    )
    shared = frame.filter(pl.col("isin").is_not_null() & pl.col("isin").is_duplicated())
    if shared.height:  # one ISIN is one security: a shared one is a data error of the package
        raise RuntimeError(
            f"pytickersymbols {version()}: symbols {shared['symbol'].to_list()} share an ISIN; "
            "resolve them in _ISIN_OVERRIDES (providers/reference_data.py)"
        )
    if frame["symbol"].is_duplicated().any():
        raise RuntimeError(
            f"pytickersymbols {version()} repeats symbols: {frame.filter(pl.col('symbol').is_duplicated())['symbol'].to_list()}"
        )
    return frame.select(list(COLUMNS)).sort("symbol")


def excluded() -> dict[str, str]:
    """Constituents left out and why (metadata)."""
    return dict(_EXCLUDED)
