"""``wealth-pipeline lakehouse ...``: the lakehouse's own commands (registered by ``wealth_pipeline.cli``).

Kept apart so the main CLI's parser stays import-light: the work is imported when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_lakehouse_parser(sub: Any) -> None:
    """Register ``lakehouse migrate`` on the main parser's subcommands."""
    lake = sub.add_parser("lakehouse", help="lakehouse tables: convert a parquet-layout lakehouse to Delta")
    verbs = lake.add_subparsers(dest="lakehouse_command", required=True)
    mig = verbs.add_parser("migrate", help="convert the processed and models tiers' parquet files into Delta tables "
                           "(one commit per table, verified, then the parquet files are deleted)")
    mig.add_argument("--uri", default=None, help="lakehouse root (default: WEALTH_LAKEHOUSE_URI / the local state)")
    mig.add_argument("--keep-parquet", action="store_true", help="keep the converted parquet files")
    mig.add_argument("--json", action="store_true")
    mig.set_defaults(func=cmd_lakehouse_migrate)


def cmd_lakehouse_migrate(args: argparse.Namespace) -> int:
    from wealth_pipeline.lakehouse.migrate import migrate
    from wealth_pipeline.lakehouse.store import Lakehouse, LakehouseError
    from wealth_pipeline.settings import Settings

    settings = Settings.from_env()
    lake = Lakehouse.from_uri(args.uri or settings.lakehouse_uri, settings.s3_endpoint_url, settings.s3_region)
    say = (lambda _: None) if args.json else print
    try:
        done = migrate(lake, delete_parquet=not args.keep_parquet, log=say)
    except LakehouseError as exc:
        print(f"wealth-pipeline lakehouse migrate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{"table": f"{m.tier}/{m.dataset}", "files": m.files, "rows": m.rows, "version": m.version}
                          for m in done], indent=2))
    elif not done:
        print(f"nothing to convert: {lake.uri()} holds no parquet-layout dataset in the processed or models tier")
    return 0
