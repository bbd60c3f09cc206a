"""RL algorithms for cola-gym envs, and the one table that names them.

:data:`ALGORITHMS` lists every algorithm that suite files, the benchmark runner, rl-zoo3
(``python -m cola_agents.zoo``) and the ``cola-gym`` command know, each under one name (the
zoo's: ``ppo_mask`` is MaskablePPO), with the policy that makes it start as the CoLA prior. As
Stable-Baselines3's ``policy_aliases`` and rl-zoo3's ``ALGOS``, adding an entry is all it takes
for every reader to accept the name. Classes are imported when first asked for, so reading the
table imports neither torch nor Stable-Baselines3.

An algorithm outside the table joins by its ``"module:Class"`` path wherever a name is taken
(suite files, ``cola-gym benchmark run --algo``): see :func:`user_algorithm`.

GRPO over latent actions is written here (:class:`~cola_agents.algorithms.grpo.GRPO`, used like
SB3's algorithms: ``learn``, ``save``, ``load``)::

    from cola_agents.algorithms import make_algorithm

    agent = make_algorithm("grpo", make_sb3_env("CoLA-Countdown-Easy-Train-v0", n_envs=16,
                                                observation="hidden+prior"), group_size=8)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cola_agents.algorithms.grpo import GRPO, GroupPolicy


def import_object(path: str) -> Any:
    """The object a ``"module:name"`` path names, its module imported on the way."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"{path!r} is not a 'module:name' path")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class AlgorithmEntry:
    """An algorithm under its one name.

    Attributes:
        name: the name in suite files, run files, rl-zoo3's ``--algo`` and the command line.
        class_path: ``"module:Class"`` of the algorithm (imported on first use).
        prior_policy: the policy that starts as the CoLA prior: a ``"module:Class"`` path, or
            an alias in the algorithm's ``policy_aliases`` (``"MlpPolicy"``: the algorithm's
            own policy already reads the prior from the observation).
        zoo_name: the name rl-zoo3 knows the algorithm by (``--algo``, the hyperparameter
            file ``cola_agents/zoo/hyperparams/<zoo_name>.yml``).
        summary: one line for help texts.
    """

    name: str
    class_path: str
    prior_policy: str
    zoo_name: str
    summary: str

    def algorithm_class(self) -> Any:
        """The algorithm's class (a Stable-Baselines3 ``BaseAlgorithm``)."""
        return import_object(self.class_path)

    def policy(self) -> Any:
        """The policy class, or the alias, that the algorithm is built with."""
        return import_object(self.prior_policy) if ":" in self.prior_policy else self.prior_policy


ALGORITHMS: dict[str, AlgorithmEntry] = {
    entry.name: entry
    for entry in (
        AlgorithmEntry("ppo", "stable_baselines3:PPO", "cola_agents.policies:CoLAPriorPolicy", "ppo",
                       "PPO with an actor that starts as the CoLA prior"),
        AlgorithmEntry("a2c", "stable_baselines3:A2C", "cola_agents.policies:CoLAPriorPolicy", "a2c",
                       "A2C with an actor that starts as the CoLA prior"),
        AlgorithmEntry("ppo_mask", "sb3_contrib:MaskablePPO", "cola_agents.policies:CoLAMaskablePriorPolicy",
                       "ppo_mask", "MaskablePPO (the task's action masks) from the CoLA prior"),
        AlgorithmEntry("grpo", "cola_agents.algorithms.grpo:GRPO", "MlpPolicy", "grpo",
                       "group-relative policy optimisation over the CoLA prior"),
    )
}  # fmt: skip
"""Every algorithm by its name."""


def algorithm_names() -> tuple[str, ...]:
    """The names of :data:`ALGORITHMS`, in table order."""
    return tuple(ALGORITHMS)


def algorithm_entry(name: str) -> AlgorithmEntry:
    """The entry of ``name``: a name of :data:`ALGORITHMS`, or a user's own algorithm as
    ``"module:Class"`` (see :func:`user_algorithm`); ``ValueError`` naming the known ones when
    there is none."""
    if ":" in name:
        return user_algorithm(name)
    found = ALGORITHMS.get(name)
    if found is None:
        raise ValueError(f"unknown algorithm {name!r}; choose from {algorithm_names()} or give 'module:Class'")
    return found


def user_algorithm(class_path: str) -> AlgorithmEntry:
    """The entry of an algorithm that is not in :data:`ALGORITHMS`: any Stable-Baselines3-style
    class (``Class(policy, env, seed=..., tensorboard_log=..., **hyperparameters)`` with
    ``learn``, ``predict``, ``save`` and ``load``) named by ``"module:Class"``.

    Its policy: the class attribute ``prior_policy`` if it has one (a ``"module:Class"`` path
    or an alias of its ``policy_aliases``); else, for an actor-critic algorithm (a subclass of
    SB3's ``OnPolicyAlgorithm``, MaskablePPO's included), the policy that starts as the CoLA
    prior; else its ``"MlpPolicy"``.
    """
    try:
        cls = import_object(class_path)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"algorithm {class_path!r}: cannot import it ({err})") from err
    if not isinstance(cls, type) or not all(callable(getattr(cls, m, None)) for m in ("learn", "predict", "load")):
        raise ValueError(f"algorithm {class_path!r} is not an algorithm class (one with learn, predict and load)")
    policy = getattr(cls, "prior_policy", None)
    if not isinstance(policy, str):
        from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

        policy = "MlpPolicy"
        if issubclass(cls, OnPolicyAlgorithm):
            from sb3_contrib import MaskablePPO

            masked = issubclass(cls, MaskablePPO)
            policy = f"cola_agents.policies:CoLA{'Maskable' if masked else ''}PriorPolicy"
    summary = (cls.__doc__ or class_path).strip().splitlines()[0]
    return AlgorithmEntry(class_path, class_path, policy, "", summary)


def algorithm_class(name: str) -> Any:
    """The class of algorithm ``name`` (a name of :data:`ALGORITHMS` or ``"module:Class"``; its
    ``load`` restores a saved agent)."""
    return algorithm_entry(name).algorithm_class()


def make_algorithm(name: str, env: Any, **kwargs: Any) -> Any:
    """A new agent of algorithm ``name`` on ``env`` that starts as the CoLA prior.

    Args:
        name: a name of :data:`ALGORITHMS`, or ``"module:Class"`` (:func:`user_algorithm`).
        env: the env or vector env it trains on (made with ``observation="hidden+prior"``).
        **kwargs: the algorithm's keyword arguments (hyperparameters, ``seed``, ...).
    """
    entry = algorithm_entry(name)
    return entry.algorithm_class()(entry.policy(), env, **kwargs)


def __getattr__(name: str) -> Any:
    """``GRPO`` and ``GroupPolicy`` are imported when first used (they import torch and SB3)."""
    if name in ("GRPO", "GroupPolicy"):
        return import_object(f"cola_agents.algorithms.grpo:{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALGORITHMS",
    "GRPO",
    "AlgorithmEntry",
    "GroupPolicy",
    "algorithm_class",
    "algorithm_entry",
    "algorithm_names",
    "import_object",
    "make_algorithm",
    "user_algorithm",
]
