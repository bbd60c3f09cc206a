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

    [algorithms.grpo]         # an algorithm's name, or any name with  algorithm = "grpo"
    learning_rate = 3e-4
    group_size = 8

    [algorithms.grpo-token]   # the same on the token twins
    algorithm = "grpo"
    actions = "token"

Algorithm names are those of :data:`cola_agents.algorithms.ALGORITHMS`; an algorithm of your
own joins by its class path (``algorithm = "my_package.algos:MyAlgo"``, importable where the
suite runs). Every (algorithm, task, seed) is one :class:`RunSpec`; the runner trains and
evaluates each.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cola_agents.algorithms import algorithm_class, algorithm_entry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ACTIONS = ("latent", "token")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ENV_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_RUNNER_ARGUMENTS = ("policy", "env", "seed", "tensorboard_log", "device", "_init_setup_model")
"""Arguments the runner sets itself: not hyperparameters."""


def _check_int(where: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class TaskSpec:
    """A task: the id trained on and the id whose fixed problems are evaluated.

    Attributes:
        train: training id (e.g. ``CoLA-Countdown-Easy-Train-v0``).
        eval: evaluation id (problems ``0..eval_problems-1``).
    """

    train: str
    eval: str

    def __post_init__(self) -> None:
        for env_id in (self.train, self.eval):
            if not isinstance(env_id, str) or not _ENV_ID.fullmatch(env_id):
                raise ValueError(f"task ids are registered env ids such as 'CoLA-Countdown-Easy-v0', got {env_id!r}")

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
        algorithm: a name of :data:`cola_agents.algorithms.ALGORITHMS`, or a user's own
            algorithm class as ``"module:Class"``.
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
        if not isinstance(self.name, str) or not _PLAIN_NAME.fullmatch(self.name):
            raise ValueError(
                f"algorithm name {self.name!r} must be a plain name (letters, digits, '_' and '-', at most 64): "
                "it names the run's files"
            )
        try:
            algorithm_entry(self.algorithm)
        except ValueError as err:
            raise ValueError(f"algorithm {self.name!r}: {err}") from None
        if self.actions not in ACTIONS:
            raise ValueError(f"algorithm {self.name!r}: actions must be one of {ACTIONS}, got {self.actions!r}")
        kl = self.prior_kl_coef
        if isinstance(kl, bool) or not isinstance(kl, (int, float)) or not math.isfinite(kl) or kl < 0:
            raise ValueError(f"algorithm {self.name!r}: prior_kl_coef must be a number >= 0, got {kl!r}")
        if kl and self.actions == "token":
            raise ValueError(f"algorithm {self.name!r}: prior_kl_coef applies to latent actions only")
        self.check_hyperparameters()

    def check_hyperparameters(self) -> None:
        """Raises ``ValueError`` for a keyword the algorithm class does not take, or a value of the
        wrong kind (a number where the default is a number, a bool where it is a bool, ...)."""
        parameters = inspect.signature(algorithm_class(self.algorithm).__init__).parameters
        accepted = sorted(p for p in parameters if p not in (*_RUNNER_ARGUMENTS, "self"))
        for key, value in self.hyperparameters.items():
            if key in _RUNNER_ARGUMENTS:
                raise ValueError(f"algorithm {self.name!r}: {key} is set by the runner, not a hyperparameter")
            if key not in parameters:
                raise ValueError(
                    f"algorithm {self.name!r}: {self.algorithm} has no hyperparameter {key!r}; it takes {accepted}"
                )
            default = parameters[key].default
            if not _same_kind(value, default):
                raise ValueError(
                    f"algorithm {self.name!r}: {key} must be {type(default).__name__} like its default "
                    f"{default!r}, got {value!r}"
                )


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a suite value can stand where ``default`` does (unknown kinds pass)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        return number and (not isinstance(default, int) or isinstance(value, int)) and math.isfinite(value)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


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
        for name in ("budget", "eval_points", "eval_problems", "n_envs"):
            _check_int("suite", name, getattr(self, name), 1)
        for seed in self.seeds:
            _check_int("suite", "each seed", seed, 0)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"suite: seeds must be different, got {list(self.seeds)}")
        if self.eval_points > self.budget:
            raise ValueError(f"suite: eval_points ({self.eval_points}) cannot exceed the budget ({self.budget})")
        if not isinstance(self.env_kwargs, Mapping):
            raise ValueError(f"suite: env_kwargs must be a table, got {self.env_kwargs!r}")
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
        from cola_gym.registration import registry

        entries = registry()
        token = any(a.actions == "token" for a in self.algorithms)
        for task in self.tasks:
            for env_id in (task.train, task.eval):
                if env_id not in entries:
                    raise ValueError(f"{env_id} is not a registered cola-gym id")
                if token and entries[env_id].token_twin is None:
                    raise ValueError(f"{env_id} has no token twin (-Token- id), which token-action algorithms need")
            available = _num_tasks(task.eval, self.env_kwargs)
            if available is not None and self.eval_problems > available:
                raise ValueError(
                    f"suite: eval_problems = {self.eval_problems} but {task.eval} has {available} evaluation problems"
                )


def _num_tasks(env_id: str, env_kwargs: Mapping[str, Any]) -> int | None:
    """How many problems ``env_id`` has (``None`` when its data cannot be read here)."""
    from cola_gym.registration import task_for

    try:
        return task_for(env_id, **env_kwargs).num_tasks
    except (OSError, ValueError, TypeError):
        return None  # the run itself reports the missing data, with the paths it tried


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
    if not isinstance(data.get("task", []), list) or not isinstance(data.get("algorithms", {}), Mapping):
        raise ValueError(f"{where}: give tasks as [[task]] entries and algorithms as [algorithms.<name>] tables")
    if not isinstance(data.get("env_kwargs", {}), Mapping):
        raise ValueError(f"{where}: env_kwargs must be a table")
    tasks = tuple(_task(entry, where) for entry in data.get("task", []))
    algorithms = []
    for name, entry in data.get("algorithms", {}).items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: [algorithms.{name}] must be a table of hyperparameters")
        algorithms.append(_algorithm(name, dict(entry), where))
    fields = {k: data[k] for k in ("budget", "eval_points", "eval_problems", "n_envs") if k in data}
    for name, value in fields.items():
        _check_int(where, name, value, 1)
    if "seeds" in data:
        seeds = data["seeds"]
        if not isinstance(seeds, (list, tuple)):
            raise ValueError(f"{where}: seeds must be a list of integers, got {seeds!r}")
        fields["seeds"] = tuple(_check_int(where, "each seed", s, 0) for s in seeds)
    try:
        return Suite(tasks, tuple(algorithms), env_kwargs=dict(data.get("env_kwargs", {})), **fields)
    except ValueError as err:
        raise ValueError(f"{where}: {err}".replace(f"{where}: suite: ", f"{where}: ")) from None


def _task(entry: Any, where: str) -> TaskSpec:
    if isinstance(entry, str):
        return TaskSpec(train=training_id(entry), eval=entry)
    if not isinstance(entry, Mapping) or "eval" not in entry:
        raise ValueError(f"{where}: each [[task]] needs eval = '<id>' (and optionally train = '<id>')")
    return TaskSpec(train=str(entry.get("train") or training_id(entry["eval"])), eval=str(entry["eval"]))


def _algorithm(name: str, entry: dict[str, Any], where: str) -> AlgorithmSpec:
    algorithm = entry.pop("algorithm", name)
    actions = entry.pop("actions", "latent")
    prior_kl_coef = entry.pop("prior_kl_coef", 0.0)
    try:
        return AlgorithmSpec(name, str(algorithm), str(actions), entry, prior_kl_coef)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def training_id(eval_id: str) -> str:
    """The training id its spec declares for an evaluation id (``train_id``), else the id itself."""
    from cola_gym.registration import registry

    found = registry().get(eval_id)
    return found.train_id if found is not None and found.train_id is not None else eval_id


def parse_algorithms(names: Sequence[str]) -> tuple[AlgorithmSpec, ...]:
    """``["grpo", "ppo-token", "my_algos:Reinforce"]`` -> default-configured algorithms (``-token``:
    on the token twins). A ``module:Class`` algorithm is labelled by its class name."""
    specs = []
    for name in names:
        algorithm, token = (name[: -len("-token")], True) if name.endswith("-token") else (name, False)
        label = algorithm.rpartition(":")[2] + ("-token" if token else "") if ":" in algorithm else name
        specs.append(AlgorithmSpec(label, algorithm, "token" if token else "latent"))
    return tuple(specs)
