"""What a benchmark runs: a suite of tasks, algorithms, a budget, seeds and held-out problems.

A suite is a TOML file (or the same fields in Python)::

    budget = 20000            # env tokens per run (every decoder step of every row)
    eval_points = 5           # evaluations after 0, 1/5, ..., 5/5 of the budget
    eval_problems = 64        # held-out problems 0..63 of each task's evaluation id
    seeds = [0, 1, 2]
    n_envs = 16

    [[task]]
    train = "CoLA-Micro-Countdown-Easy-Train-v0"
    eval = "CoLA-Micro-Countdown-Easy-v0"

    [algorithms.grpo]         # a name from ALGORITHMS, or any name with  algorithm = "grpo"
    learning_rate = 3e-4
    group_size = 8

    [algorithms.grpo-token]   # the same on the token twins
    algorithm = "grpo"
    actions = "token"

Every (algorithm, task, seed) is one :class:`RunSpec`; the runner trains and evaluates each.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ALGORITHMS = ("ppo", "a2c", "maskable_ppo", "grpo")
"""Algorithms the runner builds (each starts from the CoLA prior, see ``runner.make_agent``)."""
ACTIONS = ("latent", "token")


@dataclass(frozen=True)
class TaskSpec:
    """A task: the id trained on and the id whose fixed problems are evaluated.

    Attributes:
        train: training id (e.g. ``CoLA-Countdown-Easy-Train-v0``).
        eval: evaluation id (problems ``0..eval_problems-1``).
    """

    train: str
    eval: str

    @property
    def name(self) -> str:
        """The evaluation id without ``CoLA-`` and the version (``Countdown-Easy``)."""
        name = self.eval.removeprefix("CoLA-")
        return name.rsplit("-v", 1)[0]


@dataclass(frozen=True)
class AlgorithmSpec:
    """An algorithm as configured in a suite.

    Attributes:
        name: the suite's label (``grpo``, ``grpo-token``, ``ppo-no-kl``, ...).
        algorithm: one of :data:`ALGORITHMS`.
        actions: ``"latent"`` (the ids) or ``"token"`` (their token twins).
        hyperparameters: keyword arguments of the algorithm class.
        prior_kl_coef: the env's KL-to-prior reward term (latent PPO/A2C; GRPO has ``kl_coef``).
    """

    name: str
    algorithm: str
    actions: str = "latent"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    prior_kl_coef: float = 0.0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {self.name!r}: unknown algorithm {self.algorithm!r}; choose from {ALGORITHMS}")
        if self.actions not in ACTIONS:
            raise ValueError(f"algorithm {self.name!r}: actions must be one of {ACTIONS}, got {self.actions!r}")
        if self.prior_kl_coef < 0 or (self.prior_kl_coef and self.actions == "token"):
            raise ValueError(f"algorithm {self.name!r}: prior_kl_coef must be >= 0 and applies to latent actions")


@dataclass(frozen=True)
class RunSpec:
    """One (algorithm, task, seed) run and everything it needs: picklable, for any launcher."""

    algorithm: AlgorithmSpec
    task: TaskSpec
    seed: int
    budget: int
    eval_budgets: tuple[int, ...]
    eval_problems: int
    n_envs: int
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``<algorithm>__<task>__seed<k>``: the run's file names."""
        return f"{self.algorithm.name}__{self.task.name}__seed{self.seed}"

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON-able data (recorded in the run's result)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Suite:
    """Tasks x algorithms x seeds at one budget.

    Attributes:
        tasks: the tasks.
        algorithms: the algorithms.
        seeds: one run per seed.
        budget: env tokens per run.
        eval_points: evaluations at ``0, budget/eval_points, ..., budget``.
        eval_problems: held-out problems ``0..eval_problems-1`` of each evaluation id.
        n_envs: episodes decoded together in training.
        env_kwargs: extra env arguments (``model``, ``data_dir``, ``max_episode_steps``, ...).
    """

    tasks: tuple[TaskSpec, ...]
    algorithms: tuple[AlgorithmSpec, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    budget: int = 20_000
    eval_points: int = 5
    eval_problems: int = 64
    n_envs: int = 16
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tasks or not self.algorithms or not self.seeds:
            raise ValueError("a suite needs at least one task, one algorithm and one seed")
        if self.budget < 1 or self.eval_points < 1 or self.eval_problems < 1 or self.n_envs < 1:
            raise ValueError("budget, eval_points, eval_problems and n_envs must be >= 1")
        names = [a.name for a in self.algorithms]
        if len(set(names)) != len(names):
            raise ValueError(f"algorithm names must be unique, got {names}")

    @property
    def eval_budgets(self) -> tuple[int, ...]:
        """The env-token counts at which each run is evaluated (0 first: the start)."""
        return tuple(round(self.budget * k / self.eval_points) for k in range(self.eval_points + 1))

    def runs(self) -> list[RunSpec]:
        """Every (algorithm, task, seed), seeds innermost-last so early results cover every pair."""
        shared = (self.budget, self.eval_budgets, self.eval_problems, self.n_envs, dict(self.env_kwargs))
        return [
            RunSpec(algorithm, task, seed, *shared)
            for seed in self.seeds
            for task in self.tasks
            for algorithm in self.algorithms
        ]

    def check_ids(self) -> None:
        """Raises ``ValueError`` for an id that is not registered (with token twins where asked)."""
        import gymnasium as gym

        import cola_gym  # noqa: F401 - registers the ids
        from cola_gym.registration import token_twin_id

        token = any(a.actions == "token" for a in self.algorithms)
        for task in self.tasks:
            for env_id in (task.train, task.eval):
                wanted = [env_id, token_twin_id(env_id)] if token else [env_id]
                for found in wanted:
                    if found not in gym.registry:
                        raise ValueError(f"{found} is not a registered cola-gym id")


def load_suite(path: str | os.PathLike[str], **overrides: Any) -> Suite:
    """A suite from a TOML file (see the module docstring); ``overrides`` replace top-level fields."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no suite file {file}")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{file}: not valid TOML ({err})") from err
    data.update({k: v for k, v in overrides.items() if v is not None})
    return suite_from_dict(data, where=str(file))


def suite_from_dict(data: Mapping[str, Any], where: str = "suite") -> Suite:
    """A suite from TOML-shaped data."""
    known = {"task", "algorithms", "seeds", "budget", "eval_points", "eval_problems", "n_envs", "env_kwargs"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}; accepted: {sorted(known)}")
    tasks = tuple(_task(entry, where) for entry in data.get("task", []))
    algorithms = tuple(_algorithm(name, dict(entry), where) for name, entry in data.get("algorithms", {}).items())
    fields = {k: data[k] for k in ("budget", "eval_points", "eval_problems", "n_envs") if k in data}
    if "seeds" in data:
        fields["seeds"] = tuple(int(s) for s in data["seeds"])
    return Suite(tasks, algorithms, env_kwargs=dict(data.get("env_kwargs", {})), **fields)


def _task(entry: Any, where: str) -> TaskSpec:
    if isinstance(entry, str):
        return TaskSpec(train=training_id(entry), eval=entry)
    if not isinstance(entry, Mapping) or "eval" not in entry:
        raise ValueError(f"{where}: each [[task]] needs eval = '<id>' (and optionally train = '<id>')")
    return TaskSpec(train=str(entry.get("train") or training_id(entry["eval"])), eval=str(entry["eval"]))


def _algorithm(name: str, entry: dict[str, Any], where: str) -> AlgorithmSpec:
    algorithm = entry.pop("algorithm", name)
    actions = entry.pop("actions", "latent")
    prior_kl_coef = float(entry.pop("prior_kl_coef", 0.0))
    try:
        return AlgorithmSpec(name, str(algorithm), str(actions), entry, prior_kl_coef)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def training_id(eval_id: str) -> str:
    """The training id beside an evaluation id (``X-v0`` -> ``X-Train-v0`` when registered, else itself)."""
    import gymnasium as gym

    import cola_gym  # noqa: F401 - registers the ids

    base, _, version = eval_id.rpartition("-")
    candidate = f"{base}-Train-{version}"
    return candidate if candidate in gym.registry else eval_id


def parse_algorithms(names: Sequence[str]) -> tuple[AlgorithmSpec, ...]:
    """``["grpo", "ppo-token"]`` -> default-configured algorithms (``-token``: on the token twins)."""
    specs = []
    for name in names:
        algorithm, token = (name[: -len("-token")], True) if name.endswith("-token") else (name, False)
        specs.append(AlgorithmSpec(name, algorithm, "token" if token else "latent"))
    return tuple(specs)
