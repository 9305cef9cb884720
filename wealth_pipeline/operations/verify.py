"""Is the latest backup there, recent and restorable? Checked without touching the live databases."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wealth_pipeline.operations import manifest as lake_manifest
from wealth_pipeline.operations import pgtools
from wealth_pipeline.operations.location import (
    BackupLocation,
    BackupNotFoundError,
    backup_time,
    object_key,
    sha256_file,
)


@dataclass
class BackupCheck:
    backup_id: str | None
    age: dt.timedelta | None
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "age_hours": round(self.age.total_seconds() / 3600, 2) if self.age else None,
                "passed": self.passed, "problems": self.problems, **self.details}


def check_latest_backup(location: BackupLocation, now: dt.datetime, max_age: dt.timedelta, *, deep: bool = True,
                        bindir: Path | None = None) -> BackupCheck:
    """The newest complete backup exists, is younger than ``max_age`` and, with ``deep``, is restorable:
    every dump matches its checksum and ``pg_restore --list`` of the recorded major version reads it,
    and every lakehouse object it references is present (copy mode)."""
    try:
        backup_id = location.latest()
    except BackupNotFoundError as exc:
        return BackupCheck(None, None, [str(exc)])
    age = now - backup_time(backup_id)
    check = BackupCheck(backup_id, age)
    if age > max_age:
        check.problems.append(f"latest backup {backup_id} is {age.total_seconds() / 3600:.1f} h old "
                              f"(more than {max_age.total_seconds() / 3600:.0f} h)")
    manifest = location.read_manifest(backup_id)
    check.details["databases"] = sorted(manifest.get("databases", {}))
    if not deep:
        return check
    with tempfile.TemporaryDirectory(prefix="wealth-backup-check-") as scratch:
        for kind, record in manifest.get("databases", {}).items():
            try:
                path = location.file_path(f"{backup_id}/{record['file']}", Path(scratch))
            except BackupNotFoundError as exc:
                check.problems.append(f"{kind}: {exc}")
                continue
            if sha256_file(path) != record["file_sha256"]:
                check.problems.append(f"{kind}: {record['file']} does not match its checksum in the manifest")
                continue
            try:
                tool = pgtools.find_tool("pg_restore", record["server_version_num"] // 10000, bindir)
                listing = pgtools.run_tool([str(tool), "--list", str(path)], "postgresql://", timeout=600).stdout
            except pgtools.ToolError as exc:
                check.problems.append(f"{kind}: {exc}")
                continue
            check.details[f"{kind}_archive_entries"] = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
    section = manifest.get("lakehouse") or {}
    if section.get("mode") == "copy":
        wanted = {object_key(f["sha256"]) for f in lake_manifest.manifest_files(section["manifest"]).values()}
        missing = sorted(wanted - location.object_keys())
        if missing:
            check.problems.append(f"lakehouse: {len(missing)} object(s) the backup references are missing (e.g. {missing[0]})")
        check.details["lakehouse_files"] = len(wanted)
    return check
