"""The env registry: every id declared in the families' specs, parsed once into typed entries.

Each task family declares its ids in ``cola_gym/tasks/<family>/spec.toml``. On
``import cola_gym`` the specs are read into :class:`EnvEntry` values and registered with
Gymnasium; this stays light (TOML and string entry points: nothing imports torch until
``gym.make`` builds an env or :func:`task_for` builds a task).

The registry answers what callers used to work out from id strings: an id's task
(:func:`task_for`), its training id, its token twin, its difficulty level and its short
data name (:func:`entry`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from cola_gym.envs.task import Task

ENV_ENTRY_POINT = "cola_gym.envs.env:LatentActionEnv"
VECTOR_ENTRY_POINT = "cola_gym.envs.vector:LatentActionVectorEnv"
SPEC_FILE = "spec.toml"


def tasks_dir() -> Traversable:
    """The folder of task families (``cola_gym/tasks``), each with a ``spec.toml``."""
    return resources.files("cola_gym.tasks")


def load_task_specs() -> dict[str, dict[str, Any]]:
    """Every family's spec, parsed, by family name (``{"math": {...}, "countdown": {...}}``)."""
    specs = {}
    for folder in sorted(tasks_dir().iterdir(), key=lambda e: e.name):
        spec = folder / SPEC_FILE
        if folder.is_dir() and spec.is_file():
            specs[folder.name] = tomllib.loads(spec.read_text(encoding="utf-8"))
    return specs


@dataclass(frozen=True)
class EnvEntry:
    """One registered id, as its family's spec declares it.

    Attributes:
        id: the env id.
        family: the task family (its folder under ``cola_gym/tasks``).
        task: the task class as ``"module:Class"``.
        task_kwargs: the task's arguments (tables such as ``level`` and ``dataset`` resolved).
        action_kind: ``"latent"``, or ``"token"`` for a token twin.
        max_episode_steps: Gymnasium's time limit.
        level: the difficulty label, if the id is on a ladder.
        data_name: its short name as training data (``"gsm8k:train"``).
        train_id: for an evaluation id, the id that trains for it (``None``: none declared).
        is_train: whether some evaluation id names this one as its ``train_id``.
        token_twin: the id of its token-action twin, if the family has twins.
        twin_of: for a token twin, the latent-action id it mirrors.
        model: the directory of the id's default model, if one is named.
    """

    id: str
    family: str
    task: str
    task_kwargs: Mapping[str, Any] = field(default_factory=dict)
    action_kind: str = "latent"
    max_episode_steps: int | None = None
    level: str | None = None
    data_name: str | None = None
    train_id: str | None = None
    is_train: bool = False
    token_twin: str | None = None
    twin_of: str | None = None
    model: str | None = None

    def registration(self) -> dict[str, Any]:
        """The ``gym.register`` arguments of this id."""
        kwargs: dict[str, Any] = {"task": self.task, **self.task_kwargs}
        if self.model is not None:
            kwargs["model"] = self.model
        if self.action_kind != "latent":
            kwargs["action_kind"] = self.action_kind
        return {
            "id": self.id,
            "entry_point": ENV_ENTRY_POINT,
            "vector_entry_point": VECTOR_ENTRY_POINT,
            "max_episode_steps": self.max_episode_steps,
            "order_enforce": False,  # the env raises its own EpisodeOverError for a step before reset
            "kwargs": kwargs,
        }


class Registry(Mapping[str, EnvEntry]):
    """Every declared id's :class:`EnvEntry`, by id (token twins included)."""

    def __init__(self, entries: Mapping[str, EnvEntry]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, env_id: str) -> EnvEntry:
        try:
            return self._entries[env_id]
        except KeyError:
            raise KeyError(f"no cola-gym env {env_id!r}; ids: see cola_gym.ENV_IDS") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def by_data_name(self) -> dict[str, str]:
        """Short training-data names and their ids (``{"gsm8k:train": "CoLA-GSM8K-Train-v0"}``)."""
        return {e.data_name: e.id for e in self.values() if e.data_name is not None}

    @property
    def ladder(self) -> dict[str, str]:
        """The level of every evaluation id on a ladder (``{"CoLA-Countdown-Easy-v0": "easy"}``)."""
        return {e.id: e.level for e in self.values() if e.level is not None and not e.is_train and e.twin_of is None}

    def task_for(self, env_id: str, **kwargs: Any) -> Task:
        """The task of ``env_id``, built from its spec; ``kwargs`` override the spec's task arguments.

        Keywords the task class does not take (an env's ``observation``, a ``data_dir`` for a
        procedural task) are ignored, so an env's keyword set can be passed as it is.
        """
        entry = self[env_id]
        found = task_class(entry.task)
        accepted = inspect.signature(found).parameters
        overrides = {k: v for k, v in kwargs.items() if k in accepted and v is not None}
        return found(**{**entry.task_kwargs, **overrides})


def parse_specs(specs: Mapping[str, Mapping[str, Any]]) -> Registry:
    """The typed entries of every ``[[env]]`` of ``specs`` (by family), checked.

    An entry's ``task`` is ``"module:Class"`` (the file's top-level ``task`` by default) and
    its ``kwargs`` the task's arguments. A ``dataset`` kwarg naming a ``[datasets.<name>]``
    table of the same file is replaced by that table (plus its name); where the file has
    ``[levels.<name>]`` tables, an entry's ``level`` is also the task's ``level`` kwarg. A
    ``model`` (entry or file level) names the id's default model in ``cola_gym/pretrained/``.
    ``train_id`` names the id that trains for an evaluation id; ``token_twins = true`` adds a
    ``-Token-`` twin of every id.
    """
    entries: dict[str, EnvEntry] = {}
    for family, spec in specs.items():
        datasets = spec.get("datasets", {})
        levels = spec.get("levels", {})
        declared = spec.get("env", [])
        trained = {e["train_id"]: e["id"] for e in declared if "train_id" in e}
        for raw in declared:
            env_id = raw.get("id")
            task = raw.get("task", spec.get("task"))
            if not isinstance(task, str) or ":" not in task:
                raise ValueError(f"{family}: env {env_id} needs task = 'module:Class' (or a file-level task)")
            kwargs = dict(raw.get("kwargs", {}))
            dataset = kwargs.get("dataset")
            if isinstance(dataset, str) and datasets:
                if dataset not in datasets:
                    raise ValueError(f"{family}: env {env_id} names unknown dataset {dataset!r}")
                kwargs["dataset"] = {"name": dataset, **datasets[dataset]}
            if "level" in raw and "level_label" in raw:
                raise ValueError(f"{family}: env {env_id} gives both level and level_label")
            if levels and "level" in raw:
                if raw["level"] not in levels:
                    raise ValueError(f"{family}: env {env_id} names unknown level {raw['level']!r}")
                kwargs["level"] = dict(levels[raw["level"]])
            model = raw.get("model", spec.get("model"))
            entry = EnvEntry(
                id=env_id,
                family=family,
                task=task,
                task_kwargs=kwargs,
                max_episode_steps=raw.get("max_episode_steps"),
                level=raw.get("level", raw.get("level_label")),
                data_name=raw.get("data_name"),
                train_id=raw.get("train_id"),
                is_train=env_id in trained,
                token_twin=_token_twin_id(env_id) if spec.get("token_twins") else None,
                model=None if model is None else pretrained_path(model),
            )
            entries[env_id] = entry
            if entry.token_twin is not None:
                entries[entry.token_twin] = EnvEntry(
                    **{
                        **entry.__dict__,
                        "id": entry.token_twin,
                        "action_kind": "token",
                        "token_twin": None,
                        "twin_of": env_id,
                        "data_name": None,
                        "train_id": None if entry.train_id is None else _token_twin_id(entry.train_id),
                    }
                )
        for train_id, eval_id in trained.items():
            if train_id not in entries or entries[train_id].family != family:
                raise ValueError(
                    f"{family}: env {eval_id} names train_id {train_id!r}, which {family} does not declare"
                )
    return Registry(entries)


def _token_twin_id(env_id: str) -> str:
    """The id of an env's token-action twin (``CoLA-GSM8K-v0`` -> ``CoLA-GSM8K-Token-v0``).

    >>> _token_twin_id("CoLA-GSM8K-v0"), _token_twin_id("CoLA-MATH-Train-v0")
    ('CoLA-GSM8K-Token-v0', 'CoLA-MATH-Train-Token-v0')
    """
    name, _, version = env_id.rpartition("-")
    return f"{name}-Token-{version}"


def pretrained_path(name: str) -> str:
    """The directory of a model shipped in ``cola_gym/pretrained/`` (checked to exist)."""
    path = Path(__file__).resolve().parent / "pretrained" / name
    if not (path / "cola_config.json").is_file():
        raise ValueError(f"no pretrained model {name!r} in {path.parent}")
    return str(path)


def task_class(path: str) -> type[Task]:
    """The task class named by ``"module:Class"``."""
    from cola_gym.envs.task import Task

    if not isinstance(path, str) or ":" not in path:
        raise TypeError(f"task must be a Task or 'module:Class', got {path!r}")
    module, _, name = path.partition(":")
    found = getattr(importlib.import_module(module), name, None)
    if not (isinstance(found, type) and issubclass(found, Task)):
        raise TypeError(f"{path} is not a cola_gym Task class")
    return found


@functools.cache
def registry() -> Registry:
    """The registry of every declared id (parsed once per process)."""
    return parse_specs(load_task_specs())


def entry(env_id: str) -> EnvEntry:
    """The :class:`EnvEntry` of ``env_id`` (``KeyError`` naming the id if it is not one of ours)."""
    return registry()[env_id]


def task_for(env_id: str, **kwargs: Any) -> Task:
    """The task of ``env_id`` (see :meth:`Registry.task_for`)."""
    return registry().task_for(env_id, **kwargs)


def register_envs() -> list[str]:
    """Registers every declared id not registered yet; returns all declared ids."""
    for env_entry in registry().values():
        if env_entry.id not in gym.registry:
            gym.register(**env_entry.registration())
    return list(registry())
