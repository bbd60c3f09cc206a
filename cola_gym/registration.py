"""Registers every env id declared in the task specs (``envs/*.toml``) with Gymnasium.

Runs on ``import cola_gym`` and stays light: it reads TOML and registers string entry
points, so nothing imports torch until ``gym.make`` builds an env.
"""

from __future__ import annotations

import sys
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import gymnasium as gym

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def spec_dir() -> Traversable:
    """The directory of task specs: packaged as ``cola_gym.specs``, or ``envs/`` in a source checkout."""
    try:
        return resources.files("cola_gym.specs")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "envs"


def load_task_specs() -> dict[str, dict[str, Any]]:
    """Every spec file, parsed, by file name (``{"math.toml": {...}}``)."""
    specs = {}
    for entry in sorted(spec_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            specs[entry.name] = tomllib.loads(entry.read_text(encoding="utf-8"))
    return specs


def env_registrations(specs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``gym.register`` arguments of every ``[[env]]`` entry.

    A ``dataset`` kwarg naming a ``[datasets.<name>]`` table of the same file is replaced by
    that table (plus its name), so an env receives its whole task definition.
    """
    registrations = []
    for file_name, spec in specs.items():
        datasets = spec.get("datasets", {})
        for entry in spec.get("env", []):
            kwargs = dict(entry.get("kwargs", {}))
            dataset = kwargs.get("dataset")
            if isinstance(dataset, str):
                if dataset not in datasets:
                    raise ValueError(f"{file_name}: env {entry['id']} names unknown dataset {dataset!r}")
                kwargs["dataset"] = {"name": dataset, **datasets[dataset]}
            registration = {
                "id": entry["id"],
                "entry_point": entry["entry_point"],
                "vector_entry_point": entry.get("vector_entry_point"),
                "max_episode_steps": entry.get("max_episode_steps"),
                "kwargs": kwargs,
            }
            registrations.append(registration)
            if spec.get("token_twins"):
                registrations.append(
                    {**registration, "id": token_twin_id(entry["id"]), "kwargs": {**kwargs, "action_kind": "token"}}
                )
    return registrations


def token_twin_id(env_id: str) -> str:
    """The id of an env's token-action twin.

    >>> token_twin_id("CoLA-GSM8K-v0"), token_twin_id("CoLA-MATH-Train-v0")
    ('CoLA-GSM8K-Token-v0', 'CoLA-MATH-Train-Token-v0')
    """
    name, _, version = env_id.rpartition("-")
    return f"{name}-Token-{version}"


def register_envs() -> list[str]:
    """Registers every declared env id not registered yet; returns all declared ids."""
    ids = []
    for registration in env_registrations(load_task_specs()):
        ids.append(registration["id"])
        if registration["id"] not in gym.registry:
            gym.register(**registration)
    return ids
