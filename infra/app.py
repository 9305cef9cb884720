"""CDK app of wealth_pipeline: one WealthStack per environment (`-c environments=dev,prod`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aws_cdk as cdk
from wealth_infra.stack import WealthStack

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def cdk_json_context() -> dict:
    """The context of cdk.json (the `cdk` CLI passes it to the app; tests pass it themselves)."""
    return json.loads(CDK_JSON.read_text())["context"]


def build_app(app: cdk.App | None = None) -> cdk.App:
    """The app with a stack per environment named in the `environments` context (default: dev)."""
    app = app or cdk.App()
    names = app.node.try_get_context("environments") or ["dev"]
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    for name in names:
        WealthStack(
            app,
            f"Wealth-{name}",
            env_name=name,
            env=cdk.Environment(
                account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
            ),
        )
    return app


if __name__ == "__main__":
    build_app().synth()
