"""Security identifiers: ISIN, CUSIP and FIGI check digits, CUSIP from ISIN, the stable security id.

Hand-written because each check is a few lines of published arithmetic (python-stdnum would add a
dependency of ~200 number formats for three of them); the arithmetic follows the standards:

* ISIN (ISO 6166): 2-letter country, 9 alphanumeric, 1 check digit. Letters become two digits
  (A=10 ... Z=35); the check digit makes the resulting digit string pass the Luhn test.
* CUSIP: 8 characters (digits, letters, ``*@#``) and a check digit: character values (digit, A=10
  ... Z=35, * = 36, @ = 37, # = 38), every second one (2nd, 4th, ...) doubled, the sum of the
  values' decimal digits s, check = (10 - s mod 10) mod 10. A US or Canadian ISIN embeds the CUSIP
  (characters 3 to 11).
* FIGI (OpenFIGI): 12 characters, 2 letters that are not BS/BM/GG/GB/GH/KY/VG, "G", 8 consonants
  or digits, a check digit computed like CUSIP's over the first 11 (letters A=10 ... Z=35).

``security_id`` is the pipeline's own permanent id: ``"S"`` + the first 11 hex digits of the
SHA-256 of the security's origin key (its first ISIN, else ``MIC:symbol`` of its first listing),
computed once when the security first appears and then carried by its history; later ticker,
name or even ISIN changes do not change it.
"""

from __future__ import annotations

import hashlib
import re

import polars as pl

_ISIN = re.compile(r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")
_CUSIP = re.compile(r"^[A-Z0-9*@#]{8}[0-9]$")
_FIGI = re.compile(r"^[B-DF-HJ-NP-TV-Z]{2}G[B-DF-HJ-NP-TV-Z0-9]{8}[0-9]$")
_FIGI_BAD_PREFIXES = frozenset({"BS", "BM", "GG", "GB", "GH", "KY", "VG"})
CUSIP_COUNTRIES = frozenset({"US", "CA"})


def _char_value(char: str) -> int:
    if char.isdigit():
        return int(char)
    if "A" <= char <= "Z":
        return ord(char) - ord("A") + 10
    return {"*": 36, "@": 37, "#": 38}[char]


def _luhn_check_digit(digits: str) -> int:
    """The digit that, appended to ``digits``, makes the string pass the Luhn test."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:  # the payload's rightmost digit is doubled (the check digit is position -1)
            value *= 2
        total += value // 10 + value % 10
    return (10 - total % 10) % 10


def isin_check_digit(payload: str) -> int:
    """Check digit of the first 11 characters of an ISIN."""
    if len(payload) != 11 or not re.fullmatch(r"[A-Z]{2}[A-Z0-9]{9}", payload):
        raise ValueError(f"ISIN payload must be 2 letters and 9 letters/digits, got {payload!r}")
    return _luhn_check_digit("".join(str(_char_value(c)) for c in payload))


def _doubled_sum_check_digit(payload: str) -> int:
    total = 0
    for position, char in enumerate(payload):
        value = _char_value(char)
        if position % 2 == 1:
            value *= 2
        total += value // 10 + value % 10
    return (10 - total % 10) % 10


def cusip_check_digit(payload: str) -> int:
    """Check digit of the first 8 characters of a CUSIP."""
    if not re.fullmatch(r"[A-Z0-9*@#]{8}", payload):
        raise ValueError(f"CUSIP payload must be 8 characters of A-Z, 0-9, *, @, #, got {payload!r}")
    return _doubled_sum_check_digit(payload)


def figi_check_digit(payload: str) -> int:
    """Check digit of the first 11 characters of a FIGI."""
    if not re.fullmatch(r"[A-Z0-9]{11}", payload):
        raise ValueError(f"FIGI payload must be 11 letters/digits, got {payload!r}")
    return _doubled_sum_check_digit(payload)


def isin_problem(value: str) -> str | None:
    """Why ``value`` is not a valid ISIN, or None when it is."""
    if not _ISIN.fullmatch(value):
        return "an ISIN is 2 letters, 9 letters or digits and a check digit (e.g. US0378331005)"
    expected = isin_check_digit(value[:11])
    if int(value[11]) != expected:
        return f"ISIN check digit is {value[11]}, the Luhn check digit of {value[:11]} is {expected}"
    return None


def cusip_problem(value: str) -> str | None:
    """Why ``value`` is not a valid CUSIP, or None when it is."""
    if not _CUSIP.fullmatch(value):
        return "a CUSIP is 8 characters of A-Z, 0-9, *, @, # and a check digit (e.g. 037833100)"
    expected = cusip_check_digit(value[:8])
    if int(value[8]) != expected:
        return f"CUSIP check digit is {value[8]}, the check digit of {value[:8]} is {expected}"
    return None


def figi_problem(value: str) -> str | None:
    """Why ``value`` is not a valid FIGI, or None when it is."""
    if not _FIGI.fullmatch(value) or value[:2] in _FIGI_BAD_PREFIXES:
        return "a FIGI is 2 consonants (not BS, BM, GG, GB, GH, KY, VG), G, 8 consonants or digits and a check digit"
    expected = figi_check_digit(value[:11])
    if int(value[11]) != expected:
        return f"FIGI check digit is {value[11]}, the check digit of {value[:11]} is {expected}"
    return None


def is_valid_isin(value: str) -> bool:
    return isin_problem(value) is None


def is_valid_cusip(value: str) -> bool:
    return cusip_problem(value) is None


def is_valid_figi(value: str) -> bool:
    return figi_problem(value) is None


def cusip_from_isin(isin: str) -> str | None:
    """The CUSIP a valid US or Canadian ISIN embeds (check digit verified), else None."""
    if not is_valid_isin(isin) or isin[:2] not in CUSIP_COUNTRIES:
        return None
    cusip = isin[2:11]
    return cusip if is_valid_cusip(cusip) else None


def isin_country(isin: str | None) -> str | None:
    """The ISIN's country prefix (ISO 3166 alpha-2 of the numbering agency), None without an ISIN."""
    return isin[:2] if isin else None


def security_id(origin_key: str) -> str:
    """The permanent id of a security from its origin key (first ISIN, else ``MIC:symbol``)."""
    if not origin_key:
        raise ValueError("a security's origin key (first ISIN, or MIC:symbol) must not be empty")
    return "S" + hashlib.sha256(origin_key.encode()).hexdigest()[:11].upper()


def origin_key(isin: str | None, mic: str | None, symbol: str) -> str:
    """What a new security's id is derived from: its ISIN when valid, else ``MIC:symbol``."""
    if isin and is_valid_isin(isin):
        return isin
    return f"{mic or ''}:{symbol}"


_CHECKERS = {"isin": isin_problem, "cusip": cusip_problem, "figi": figi_problem}


def frame_problems(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per bad identifier of a symbol-master frame: 1-based row, field, value, what is wrong.

    Checks the isin, cusip and figi columns present (nulls allowed), that a cusip next to a US/CA
    ISIN is the one the ISIN embeds, and that security_id, when the column exists, is never null.
    """
    records: list[dict[str, object]] = []
    columns = [c for c in _CHECKERS if c in frame.columns]
    for row, values in enumerate(
        frame.select(*columns, *(["security_id"] if "security_id" in frame.columns else [])).iter_rows(
            named=True
        ),
        start=1,
    ):
        for column in columns:
            value = values[column]
            if value is not None and (problem := _CHECKERS[column](value)) is not None:
                records.append({"row": row, "field": column, "value": value, "reason": problem})
        isin, cusip = values.get("isin"), values.get("cusip")
        embedded = cusip_from_isin(isin) if isin else None
        if cusip is not None and embedded is not None and cusip != embedded:
            records.append(
                {
                    "row": row,
                    "field": "cusip",
                    "value": cusip,
                    "reason": f"CUSIP does not match the one ISIN {isin} embeds ({embedded})",
                }
            )
        if "security_id" in values and not values["security_id"]:
            records.append(
                {
                    "row": row,
                    "field": "security_id",
                    "value": None,
                    "reason": "security_id is required (or leave the column out to derive it from isin)",
                }
            )
    return pl.DataFrame(
        records, schema={"row": pl.Int64, "field": pl.Utf8, "value": pl.Utf8, "reason": pl.Utf8}
    )
