"""The rights registry: per data provider, what its licence lets an export contain.

The registry is ``providers.yaml`` beside this module (or any file passed to :func:`load`),
validated when it is read with pydantic: a mistake raises :class:`RegistryError` with one line
naming the file, the key path (``providers.vendorx.policy``) and what would be valid. Entitlements
(the licences a deployment or a login holds) never live here: they come from ``WEALTH_ENTITLEMENTS``
(:func:`entitlements_from_env`) and the table ``ref.entitlements``.

:func:`decide` is the whole policy: given the providers an export's rows depend on, the export
type and the licences held, which providers are left out (metadata-only), which lack their
licence (the export is refused), and the attributions and watermarks the file must carry.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REGISTRY_FILE = Path(__file__).with_name("providers.yaml")
EXPORT_TYPES: tuple[str, ...] = ("csv", "parquet", "report", "api")
POLICIES: tuple[str, ...] = ("allowed", "restricted", "metadata-only")
KINDS: tuple[str, ...] = ("synthetic", "landing", "http")
ENTITLEMENTS_VARIABLE = "WEALTH_ENTITLEMENTS"
LANDING_DEFAULT = "vendor"  # landing-zone files that match no named vendor's patterns
_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

Policy = Literal["allowed", "restricted", "metadata-only"]
ExportType = Literal["csv", "parquet", "report", "api"]


class RegistryError(ValueError):
    """The rights registry file is not valid (one line: file, key path, what is valid)."""


class ExportRule(BaseModel):
    """Overrides for one export type: its policy, whether the attribution / watermark are included."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    policy: Policy | None = None
    attribution: bool = True
    watermark: bool = True


class Provider(BaseModel):
    """One provider's licence terms."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["synthetic", "landing", "http"]
    policy: Policy
    attribution: str = Field(min_length=1)
    licence: str | None = Field(default=None, min_length=1)
    watermark: str | None = Field(default=None, min_length=1)
    files: tuple[str, ...] = ()
    exports: dict[ExportType, ExportRule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Provider:
        restricted = self.policy == "restricted" or any(
            r.policy == "restricted" for r in self.exports.values()
        )
        if restricted and not self.licence:
            raise ValueError("a restricted provider needs `licence`: the licence name an entitlement grants")
        if self.files and self.kind != "landing":
            raise ValueError("`files` (landing-zone patterns) is only valid for kind: landing")
        return self

    def rule(self, export_type: str) -> tuple[str, bool, bool]:
        """(policy, include attribution, include watermark) for ``export_type``."""
        rule = self.exports.get(export_type)  # type: ignore[call-overload]
        if rule is None:
            return self.policy, True, True
        return rule.policy or self.policy, rule.attribution, rule.watermark


class Registry(BaseModel):
    """Every provider by key (the key lineage records)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    providers: dict[str, Provider] = Field(min_length=1)

    @field_validator("providers")
    @classmethod
    def _keys(cls, providers: dict[str, Provider]) -> dict[str, Provider]:
        bad = [k for k in providers if not _KEY.match(k)]
        if bad:
            raise ValueError(
                f"provider key {bad[0]!r} is not valid: lowercase letters, digits, '_' or '-', "
                "starting with a letter"
            )
        return providers

    @property
    def licences(self) -> set[str]:
        return {p.licence for p in self.providers.values() if p.licence}

    def landing_vendor(self, path: str) -> str:
        """The landing provider whose ``files`` patterns match ``path`` (relative to the landing root)."""
        for key, provider in self.providers.items():
            if provider.kind == "landing" and any(fnmatch.fnmatchcase(path, p) for p in provider.files):
                return key
        if LANDING_DEFAULT not in self.providers:
            raise RegistryError(
                f"landing file {path!r} matches no vendor's `files` and the registry has no "
                f"{LANDING_DEFAULT!r} entry for the rest of the landing zone"
            )
        return LANDING_DEFAULT

    def status(self, key: str) -> str:
        """One line for the UI: the provider's policy and licence."""
        provider = self.providers.get(key)
        if provider is None:
            return "not in the rights registry: exports refused"
        if provider.policy == "restricted":
            return f"restricted: needs licence {provider.licence}"
        return provider.policy


def _location(loc: tuple[int | str, ...]) -> str:
    return (
        ".".join(str(p) for p in loc if p not in ("function-after", "function-before", "[key]")) or "<root>"
    )


def parse(text: str, source: str = "<string>") -> Registry:
    """A registry from YAML text; :class:`RegistryError` naming ``source`` and the key path."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RegistryError(f"rights registry {source}: not valid YAML at {where}: {problem}") from None
    if not isinstance(data, dict):
        raise RegistryError(
            f"rights registry {source}: expected a mapping with key `providers`, got {type(data).__name__}"
        )
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = _location(error["loc"])
        if error["type"] == "literal_error":
            field_name = str(error["loc"][-1])
            valid = EXPORT_TYPES if field_name == "[key]" else {"policy": POLICIES, "kind": KINDS}[field_name]
            message = f"{error.get('input')!r} is not valid; expected one of {', '.join(valid)}"
        elif error["type"] == "extra_forbidden":
            message = "unknown key; valid keys: " + ", ".join(
                Provider.model_fields
                if len(error["loc"]) == 3
                else ExportRule.model_fields
                if len(error["loc"]) > 3
                else Registry.model_fields
            )
        else:
            message = error["msg"].removeprefix("Value error, ")
        raise RegistryError(f"rights registry {source}: {where}: {message}") from None


def load(path: str | Path | None = None) -> Registry:
    """The registry in ``path`` (default: the repository's ``providers.yaml``), validated."""
    file = (Path(path) if path is not None else REGISTRY_FILE).resolve()
    try:
        stamp = file.stat().st_mtime_ns
    except OSError as exc:
        raise RegistryError(f"rights registry {file}: cannot read it ({exc.strerror})") from None
    return _load(str(file), stamp)


@cache
def _load(path: str, stamp: int) -> Registry:
    """Parsed once per file content (``stamp``: its modification time)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"rights registry {path}: cannot read it ({exc.strerror})") from None
    return parse(text, path)


def entitlements_from_env(registry: Registry, env: Mapping[str, str] | None = None) -> set[str]:
    """Licences the deployment holds: ``WEALTH_ENTITLEMENTS`` (comma-separated licence names)."""
    value = (os.environ if env is None else env).get(ENTITLEMENTS_VARIABLE, "")
    held = {item.strip() for item in value.split(",") if item.strip()}
    unknown = sorted(held - registry.licences)
    if unknown:
        raise RegistryError(
            f"{ENTITLEMENTS_VARIABLE}: unknown licence {unknown[0]!r}; the rights registry names "
            f"{', '.join(sorted(registry.licences)) or 'no licence'}"
        )
    return held


# ---- the policy ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """What an export of rows depending on ``sources`` may do."""

    export_type: str
    sources: tuple[str, ...]
    excluded: tuple[str, ...] = ()  # metadata-only providers: their rows are left out
    missing: dict[str, str] = field(default_factory=dict)  # restricted provider -> licence not held
    unknown: tuple[str, ...] = ()  # sources not in the registry
    attributions: dict[str, str] = field(default_factory=dict)
    watermarks: dict[str, str] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return not self.missing and not self.unknown

    def refusal(self) -> str:
        """The one-line reason an export is refused (empty when allowed)."""
        parts = []
        if self.missing:
            held = ", ".join(f"{p} (licence {lic})" for p, lic in sorted(self.missing.items()))
            parts.append(
                f"restricted providers without an entitlement: {held}; grant the licence in "
                f"{ENTITLEMENTS_VARIABLE} or ref.entitlements"
            )
        if self.unknown:
            parts.append(f"providers not in the rights registry: {', '.join(self.unknown)}")
        return "; ".join(parts)


def excluded_providers(registry: Registry, sources: Iterable[str], export_type: str) -> set[str]:
    """The metadata-only providers among ``sources`` for ``export_type``."""
    return {
        s
        for s in sources
        if s in registry.providers and registry.providers[s].rule(export_type)[0] == "metadata-only"
    }


def decide(
    registry: Registry, sources: Iterable[str], export_type: str, entitlements: Iterable[str]
) -> Decision:
    """The decision for an export of rows depending on ``sources`` (after metadata-only rows are left out)."""
    if export_type not in EXPORT_TYPES:
        raise ValueError(f"export type {export_type!r}; expected one of {', '.join(EXPORT_TYPES)}")
    held = set(entitlements)
    wanted = tuple(sorted(set(sources)))
    unknown = tuple(s for s in wanted if s not in registry.providers)
    excluded, missing, attributions, watermarks = [], {}, {}, {}
    for key in wanted:
        if key in unknown:
            continue
        provider = registry.providers[key]
        policy, with_attribution, with_watermark = provider.rule(export_type)
        if policy == "metadata-only":
            excluded.append(key)
            continue
        if policy == "restricted" and provider.licence not in held:
            missing[key] = str(provider.licence)
        if with_attribution:
            attributions[key] = provider.attribution
        if with_watermark and provider.watermark:
            watermarks[key] = provider.watermark
    return Decision(export_type, wanted, tuple(excluded), missing, unknown, attributions, watermarks)
