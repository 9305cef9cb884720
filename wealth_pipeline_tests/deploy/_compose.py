"""Helpers shared by the deployment tests: the compose file, `.env.example`, and interpolation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from wealth_pipeline.environment import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DEPLOY = REPO_ROOT / "deploy"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $$ is a literal dollar.
_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(KeyError):
    """A required (``:?``) variable is unset or empty."""


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """``KEY=value`` lines of a dotenv file (comments and blank lines skipped); duplicate keys refused."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path.name}:{number}: not a KEY=value line: {line!r}")
        if key in values:
            raise ValueError(f"{path.name}:{number}: {key} defined twice")
        values[key] = value
    return values


def referenced_variables(value: Any) -> set[str]:
    """Names of every ``${VAR...}`` in the strings of ``value`` (parsed YAML: comments are not read)."""
    if isinstance(value, dict):
        return set().union(*(referenced_variables(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(referenced_variables(v) for v in value)) if value else set()
    if isinstance(value, str):
        return {m.group("name") for m in _INTERPOLATION.finditer(value) if m.group("name")}
    return set()


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of strings inside ``value`` (recursively), with ``env`` as the .env file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        current = env.get(name)
        empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":?", "?"):
            if empty:
                raise MissingVariable(f"{name}: {arg or 'required'}")
            return current
        if op in (":-", "-"):
            return arg if empty else current
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def service_environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)
