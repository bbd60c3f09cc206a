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


ENV_ENTRY_POINT = "cola_gym.envs.env:LatentActionEnv"
VECTOR_ENTRY_POINT = "cola_gym.envs.vector:LatentActionVectorEnv"


def env_registrations(specs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``gym.register`` arguments of every ``[[env]]`` entry.

    Every id is the generic :class:`~cola_gym.envs.env.LatentActionEnv` (and its vector env)
    over the entry's ``task`` (``"module:Class"``; the file's top-level ``task`` by default),
    with the entry's ``kwargs`` for the task. A ``dataset`` kwarg naming a
    ``[datasets.<name>]`` table of the same file is replaced by that table (plus its name).
    An entry's ``level`` labels its difficulty (:func:`difficulty_ladder`); where the file
    has ``[levels.<name>]`` tables, the named one is also the task's ``level`` kwarg. A
    ``model`` (entry or file level) names the id's default model in ``cola_gym/pretrained/``.
    """
    registrations = []
    for file_name, spec in specs.items():
        datasets = spec.get("datasets", {})
        for entry in spec.get("env", []):
            task = entry.get("task", spec.get("task"))
            if not isinstance(task, str) or ":" not in task:
                raise ValueError(
                    f"{file_name}: env {entry.get('id')} needs task = 'module:Class' (or a file-level task)"
                )
            kwargs = dict(entry.get("kwargs", {}))
            dataset = kwargs.get("dataset")
            if isinstance(dataset, str) and datasets:
                if dataset not in datasets:
                    raise ValueError(f"{file_name}: env {entry['id']} names unknown dataset {dataset!r}")
                kwargs["dataset"] = {"name": dataset, **datasets[dataset]}
            if "levels" in spec and "level" in entry:
                if entry["level"] not in spec["levels"]:
                    raise ValueError(f"{file_name}: env {entry['id']} names unknown level {entry['level']!r}")
                kwargs["level"] = dict(spec["levels"][entry["level"]])
            model = entry.get("model", spec.get("model"))
            if model is not None:
                kwargs["model"] = pretrained_path(model)
            registration = {
                "id": entry["id"],
                "entry_point": ENV_ENTRY_POINT,
                "vector_entry_point": VECTOR_ENTRY_POINT,
                "max_episode_steps": entry.get("max_episode_steps"),
                "order_enforce": False,  # the env raises its own EpisodeOverError for a step before reset
                "kwargs": {"task": task, **kwargs},
            }
            registrations.append(registration)
            if spec.get("token_twins"):
                twin_kwargs = {**registration["kwargs"], "action_kind": "token"}
                registrations.append({**registration, "id": token_twin_id(entry["id"]), "kwargs": twin_kwargs})
    return registrations


def pretrained_path(name: str) -> str:
    """The directory of a model shipped in ``cola_gym/pretrained/`` (checked to exist)."""
    path = Path(__file__).resolve().parent / "pretrained" / name
    if not (path / "cola_config.json").is_file():
        raise ValueError(f"no pretrained model {name!r} in {path.parent}")
    return str(path)


def training_sources(specs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Short names of env ids as training data (``"gsm8k:train"`` -> ``"CoLA-GSM8K-Train-v0"``).

    Declared by ``data_name`` in an ``[[env]]`` entry.
    """
    return {
        entry["data_name"]: entry["id"]
        for spec in specs.values()
        for entry in spec.get("env", [])
        if "data_name" in entry
    }


def difficulty_ladder(specs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The difficulty label of every id that declares one (``{"CoLA-Countdown-Easy-v0": "easy"}``).

    Only evaluation ids (not ``-Train-`` ones) are listed: these are the ids that the task
    benchmark measures.
    """
    return {
        entry["id"]: entry["level"]
        for spec in specs.values()
        for entry in spec.get("env", [])
        if "level" in entry and "-Train-" not in entry["id"]
    }


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
