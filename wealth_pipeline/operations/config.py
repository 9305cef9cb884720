"""Operations settings from the environment: where backups go, how many to keep, freshness lag."""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from wealth_pipeline.settings import Settings

DEFAULT_RETENTION = "7d,4w"
DEFAULT_MAX_BACKUP_AGE_HOURS = 36.0
URI_VAR = "WEALTH_BACKUP_URI"
RETENTION_VAR = "WEALTH_BACKUP_RETENTION"
MAX_AGE_VAR = "WEALTH_BACKUP_MAX_AGE_HOURS"
_RETENTION = re.compile(r"^\s*(\d+)\s*d\s*,\s*(\d+)\s*w\s*$")


@dataclass(frozen=True)
class BackupSettings:
    uri: str
    keep_daily: int
    keep_weekly: int
    max_age: dt.timedelta


def parse_retention(text: str) -> tuple[int, int]:
    """``"7d,4w"`` -> (7 daily, 4 weekly)."""
    match = _RETENTION.match(text)
    if not match:
        raise ValueError(f"WEALTH_BACKUP_RETENTION={text!r} is not of the form '<N>d,<M>w' (e.g. {DEFAULT_RETENTION}: "
                         "keep the newest backup of each of the last 7 days and of each of the last 4 weeks)")
    return int(match.group(1)), int(match.group(2))


def make_backup_settings(uri: str | None, retention: str | None, max_age_hours: str | float | None,
                         home: Path) -> BackupSettings:
    """Validated backup settings from raw values (``None``/empty: the default); errors name the variable."""
    daily, weekly = parse_retention(retention or DEFAULT_RETENTION)
    raw_age = DEFAULT_MAX_BACKUP_AGE_HOURS if max_age_hours in (None, "") else max_age_hours
    try:
        hours = float(raw_age)
    except ValueError:
        raise ValueError(f"WEALTH_BACKUP_MAX_AGE_HOURS={raw_age!r} is not a number of hours (e.g. 36)") from None
    if hours <= 0:
        raise ValueError(f"WEALTH_BACKUP_MAX_AGE_HOURS={raw_age!r} must be a positive number of hours")
    return BackupSettings(uri or str(home / "backups"), daily, weekly, dt.timedelta(hours=hours))


def backup_settings(settings: Settings | None = None) -> BackupSettings:
    """``WEALTH_BACKUP_URI`` (default ``$WEALTH_HOME/backups``), ``WEALTH_BACKUP_RETENTION``, ``WEALTH_BACKUP_MAX_AGE_HOURS``."""
    settings = settings or Settings.from_env()
    return make_backup_settings(os.environ.get(URI_VAR), os.environ.get(RETENTION_VAR), os.environ.get(MAX_AGE_VAR),
                                settings.home)


def psycopg_url(url: str) -> str:
    """A libpq URL for a SQLAlchemy-style one (``postgresql+psycopg2://`` -> ``postgresql://``)."""
    for scheme in ("postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(scheme):
            return "postgresql://" + url[len(scheme):]
    return url
