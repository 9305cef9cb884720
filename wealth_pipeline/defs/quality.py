"""The checks pattern every asset uses.

An asset declares ``check_specs``; while materializing it evaluates them on the frame it is about to
write: Great Expectations 1.x suites for what GX expresses (schema, keys, nulls, ranges, column
pairs) and plain polars predicates for the rest (completeness against the universe, jumps no
corporate action explains, reconciliation with the warehouse). Blocking checks are evaluated
before anything is written: when one fails the asset reports every check result and then fails
once (``dg.Failure(allow_retries=False)``: the same data fails the same way on a retry), so the
previous good state of the partition stays in place and downstream assets do not run. The
publish step (``defs/publish.py``) runs this gate for every dataset asset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import dagster as dg
import polars as pl


@dataclass
class CheckOutcome:
    """The result of one check on one frame."""

    name: str
    passed: bool
    blocking: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_result(self, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=self.name,
            passed=self.passed,
            severity=dg.AssetCheckSeverity.ERROR if self.blocking else dg.AssetCheckSeverity.WARN,
            description=self.description,
            metadata={k: _metadata_value(v) for k, v in self.metadata.items()},
        )


def _metadata_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return dg.MetadataValue.json(value)
    return value


@dataclass(frozen=True)
class Check:
    """A named check: a GX suite factory or a plain predicate over the frame."""

    name: str
    description: str
    blocking: bool = True
    expectations: Callable[[], list[Any]] | None = None
    predicate: Callable[[pl.DataFrame], tuple[bool, dict[str, Any]]] | None = None

    def spec(self, asset: dg.AssetKey | str) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(self.name, asset=asset, description=self.description, blocking=self.blocking)


@lru_cache(maxsize=1)
def _gx_context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def run_expectations(frame: pl.DataFrame, suite_name: str, expectations: Sequence[Any]) -> tuple[bool, dict[str, Any]]:
    """Validate ``frame`` with a GX suite; returns success and per-expectation failure details."""
    import great_expectations as gx

    context = _gx_context()
    source = context.data_sources.add_or_update_pandas("frames")
    try:
        asset = source.get_asset(suite_name)
    except LookupError:
        asset = source.add_dataframe_asset(suite_name)
    batch_definition = next(iter(asset.batch_definitions), None) or asset.add_batch_definition_whole_dataframe("whole")
    suite = gx.ExpectationSuite(name=suite_name, expectations=list(expectations))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame.to_pandas()})
    result = batch.validate(suite, result_format="SUMMARY")
    failures = []
    for item in result.results:
        if not item.success:
            failures.append(
                {
                    "expectation": item.expectation_config.type,
                    "kwargs": {k: v for k, v in item.expectation_config.kwargs.items() if k != "batch_id"},
                    "unexpected_count": item.result.get("unexpected_count"),
                    "examples": [str(x) for x in (item.result.get("partial_unexpected_list") or [])[:5]],
                }
            )
    return bool(result.success), {"expectations": len(result.results), "failures": failures}


def evaluate(frame: pl.DataFrame, checks: Iterable[Check], suite_prefix: str) -> list[CheckOutcome]:
    """Evaluate every check on ``frame``."""
    outcomes = []
    for check in checks:
        if check.expectations is not None:
            if frame.is_empty():
                passed, details = True, {"note": "no rows to validate"}
            else:
                passed, details = run_expectations(frame, f"{suite_prefix}.{check.name}", check.expectations())
        elif check.predicate is not None:
            passed, details = check.predicate(frame)
        else:  # pragma: no cover - a Check always has one of the two
            raise ValueError(f"check {check.name} has neither expectations nor a predicate")
        outcomes.append(CheckOutcome(check.name, passed, check.blocking, check.description, details))
    return outcomes


def gate(outcomes: list[CheckOutcome], asset_key: dg.AssetKey) -> list[dg.AssetCheckResult]:
    """The check results of ``outcomes`` for ``asset_key``; it does not raise.

    The caller yields them and fails when ``blocking_failures`` is not empty; the publish step
    (``defs/publish.stop_if_blocked``) does both, without retries.
    """
    return [outcome.to_result(asset_key) for outcome in outcomes]


def blocking_failures(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    """The blocking checks that failed."""
    return [o for o in outcomes if o.blocking and not o.passed]


def failure_message(asset: str, outcomes: list[CheckOutcome]) -> str:
    lines = [f"{asset}: blocking checks failed, nothing was written (the previous state is kept):"]
    for outcome in blocking_failures(outcomes):
        lines.append(f"  - {outcome.name}: {outcome.metadata}")
    return "\n".join(lines)


# ---- plain predicates shared by several assets -------------------------------------------------
def unique_keys(keys: Sequence[str]) -> Callable[[pl.DataFrame], tuple[bool, dict[str, Any]]]:
    def predicate(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
        dupes = frame.group_by(list(keys)).len().filter(pl.col("len") > 1)
        return dupes.is_empty(), {"duplicate_keys": dupes.height, "examples": [str(r) for r in dupes.head(5).rows()]}

    return predicate


def has_columns(schema: dict[str, pl.DataType]) -> Callable[[pl.DataFrame], tuple[bool, dict[str, Any]]]:
    def predicate(frame: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
        problems = [
            f"{name}: expected {dtype}, got {frame.schema.get(name)}"
            for name, dtype in schema.items()
            if frame.schema.get(name) != dtype
        ]
        return not problems, {"problems": problems}

    return predicate
