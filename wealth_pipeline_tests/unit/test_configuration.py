"""Every environment variable the code reads is documented in settings and in the README."""

from __future__ import annotations

import re

from wealth_pipeline.environment import REPO_ROOT
from wealth_pipeline.providers.http_adapters import HTTP_ENVIRONMENT
from wealth_pipeline.settings import DEPLOY_ENVIRONMENT, ENVIRONMENT, TEST_ENVIRONMENT

VARIABLE = re.compile(r"[\"'](WEALTH_[A-Z0-9_]+)[\"']")


def _read_by(folder: str, pattern: str = "*.py") -> set[str]:
    found: set[str] = set()
    for path in (REPO_ROOT / folder).rglob(pattern):
        if path.name == "settings.py":  # the catalogue itself
            continue
        found |= set(VARIABLE.findall(path.read_text()))
    return found


def test_every_variable_the_code_reads_is_in_settings() -> None:
    assert _read_by("wealth_pipeline") - set(ENVIRONMENT) == set()
    assert set(HTTP_ENVIRONMENT) <= set(ENVIRONMENT)
    known = set(ENVIRONMENT) | set(TEST_ENVIRONMENT) | set(DEPLOY_ENVIRONMENT)
    assert _read_by("wealth_pipeline_tests") - known == set()


def test_every_variable_the_deployment_files_use_is_catalogued() -> None:
    texts = [(REPO_ROOT / name).read_text() for name in ("docker-compose.yml", ".env.example")]
    texts += [p.read_text() for p in (REPO_ROOT / "deploy").rglob("*") if p.is_file()]
    used = {m for text in texts for m in re.findall(r"\b(WEALTH_[A-Z0-9_]+)", text)}
    assert used - set(ENVIRONMENT) - set(DEPLOY_ENVIRONMENT) == set()


def test_every_variable_is_in_the_readme_configuration_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [name for name in {**ENVIRONMENT, **TEST_ENVIRONMENT, **DEPLOY_ENVIRONMENT} if f"`{name}`" not in readme]
    assert missing == []
