"""``core/`` is pure compute: no Dagster, nothing from the layers above it.

Two independent looks: every import statement in ``core/`` (module level and inside functions)
read from the source, and the modules a fresh interpreter actually loads when it imports all of
``core``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import wealth_pipeline

PACKAGE = Path(wealth_pipeline.__file__).parent
CORE = PACKAGE / "core"
# What core may never import: the orchestrator and every layer of the package above core.
FORBIDDEN_ROOTS = ("dagster", "dagster_dbt", "dagster_aws", "dagster_postgres")
UPPER_LAYERS = ("defs", "providers", "warehouse", "lakehouse", "settings", "environment", "definitions", "cli",
                "operations", "instance_storage")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against wealth_pipeline.core
                base = ["wealth_pipeline", "core"][: 2 - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            if module == "wealth_pipeline":  # from wealth_pipeline import defs
                found += [(node.lineno, f"wealth_pipeline.{alias.name}") for alias in node.names]
    return found


def _violates(module: str) -> bool:
    parts = module.split(".")
    if parts[0] in FORBIDDEN_ROOTS:
        return True
    return parts[0] == "wealth_pipeline" and len(parts) > 1 and parts[1] in UPPER_LAYERS


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import polars\n\ndef f():\n    from wealth_pipeline.defs import quality\n    import dagster as dg\n"
                      "from wealth_pipeline import settings\nfrom wealth_pipeline.core import calendars\n")
    bad = [m for _, m in _imports(sample) if _violates(m)]
    assert sorted(bad) == ["dagster", "wealth_pipeline.defs", "wealth_pipeline.settings"]


def test_no_core_module_imports_dagster_or_a_higher_layer() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) > 10
    violations = [f"{path.relative_to(PACKAGE.parent)}:{line}: imports {module}"
                  for path in files for line, module in _imports(path) if _violates(module)]
    assert violations == [], "\n".join(violations)


def test_importing_all_of_core_loads_no_dagster_and_no_higher_layer() -> None:
    modules = [f"wealth_pipeline.core.{p.stem}" for p in sorted(CORE.glob("*.py")) if p.stem != "__init__"]
    script = ("import importlib, json, sys\n"
              f"for name in {modules!r}:\n    importlib.import_module(name)\n"
              "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout)
    assert "wealth_pipeline.core.bars" in loaded
    assert [m for m in loaded if _violates(m)] == []
