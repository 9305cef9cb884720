"""Every environment variable the code reads is documented in settings and in the README."""

from __future__ import annotations

import re

from wealth_pipeline.environment import REPO_ROOT
from wealth_pipeline.providers.http_adapters import HTTP_ENVIRONMENT
from wealth_pipeline.settings import ENVIRONMENT, TEST_ENVIRONMENT

VARIABLE = re.compile(r"[\"'](WEALTH_[A-Z0-9_]+)[\"']")


def _read_by(folder: str) -> set[str]:
    found: set[str] = set()
    for path in (REPO_ROOT / folder).rglob("*.py"):
        if path.name == "settings.py":  # the catalogue itself
            continue
        found |= set(VARIABLE.findall(path.read_text()))
    return found


def test_every_variable_the_code_reads_is_in_settings() -> None:
    assert _read_by("wealth_pipeline") - set(ENVIRONMENT) == set()
    assert set(HTTP_ENVIRONMENT) <= set(ENVIRONMENT)
    assert _read_by("wealth_pipeline_tests") - set(ENVIRONMENT) - set(TEST_ENVIRONMENT) == set()


def test_every_variable_is_in_the_readme_configuration_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [name for name in {**ENVIRONMENT, **TEST_ENVIRONMENT} if f"`{name}`" not in readme]
    assert missing == []
