"""What the search needs from a model (in the spirit of mctx's ``recurrent_fn``).

The search never sees an environment: a model built for one (``for_env(env)``, the
stepper bound once) makes a root from an episode and its state (mctx's ``root_fn``), and
the search holds opaque *handles* (an episode and its state) and asks the model, for many
handles at once, to take one latent action each (mctx's ``recurrent_fn``), or to roll out
and score leaves. Batching happens behind this interface: one call, one decoder step for
all handles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from cola_agents.mcts.config import MCTSConfig


@dataclass
class StateView:
    """What the search sees of a state.

    Attributes:
        prior: ``[K]`` the latent policy's probabilities pi(a | state).
        allowed: ``[K]`` which actions may be taken.
        q_values: ``[K]`` the Q-network's Q(state, a), or ``None`` without a Q-network.
        finished: the episode ended at this state (answer complete, end of turn, limit).
    """

    prior: np.ndarray
    allowed: np.ndarray
    q_values: np.ndarray | None
    finished: bool


@dataclass
class Step:
    """The result of taking one action from a handle."""

    handle: Any
    token: int
    view: StateView


@dataclass(frozen=True)
class QPath:
    """The Q-network's values of the actions taken from a search's root: the last and their sum.

    Attributes:
        last: Q(s, a) of the latest action (``None`` before any action or without a Q-network).
        total: the sum of Q(s, a) over the actions taken.
        steps: how many actions were taken with a Q-network.
    """

    last: float | None = None
    total: float = 0.0
    steps: int = 0

    def then(self, q: float | None) -> QPath:
        """This path extended by an action of value ``q`` (``None``: no Q-network, unchanged)."""
        return self if q is None else QPath(q, self.total + q, self.steps + 1)


def leaf_score(reward: float, path: QPath, config: MCTSConfig) -> float:
    """A rollout's score: the env's reward (oracle), else the Q-network's value of its path as
    ``config.leaf_q`` reads it (0 when no action was valued)."""
    if config.leaf_value == "oracle":
        return float(reward)
    if path.last is None or path.steps == 0:
        return 0.0
    return path.total / path.steps if config.leaf_q == "path_mean" else path.last


@dataclass
class Rollout:
    """A leaf evaluation: the policy's continuation and its score.

    Attributes:
        score: the Q-network's value of the rollout's path (:func:`leaf_score`), or the env's
            reward (oracle).
        actions: the latent actions of the continuation.
        finished: whether the continuation finished the episode.
        reward: the env's reward of the continuation (0 unless it finished with a right answer).
        tokens: every token the decoder consumed during the continuation, in order.
        positions: for each action, how many of ``tokens`` were consumed before it.
    """

    score: float
    actions: list[int]
    finished: bool
    reward: float = 0.0
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


class SearchModel(Protocol):
    """A batched model of the latent-action MDP."""

    num_actions: int

    def root(self, episode: Any, state: Any) -> tuple[Any, StateView]:
        """The handle and view of a search root: an episode and its state in the model's own form
        (the cached model's :class:`~cola_gym.model.DecodingState` of one row, the re-encoding
        reference's token ids consumed so far)."""
        ...

    def step(self, handles: Sequence[Any], actions: Sequence[int]) -> list[Step]:
        """Takes ``actions[i]`` from ``handles[i]`` for every i (one batched decoder step)."""
        ...

    def action_tokens(self, handles: Sequence[Any]) -> np.ndarray:
        """``[N, K]``: the token each latent action writes from each handle's state (the world
        model only, no decoder step); actions that write the same token are aliases."""
        ...

    def rollout(self, handles: Sequence[Any], config: MCTSConfig, generator: torch.Generator) -> list[Rollout]:
        """Rolls the policy out from every handle (batched) and scores the results."""
        ...


def policy_action(view: StateView, config: MCTSConfig, generator: torch.Generator) -> int:
    """The rollout policy's action: top-k sampling (or the argmax) among allowed actions."""
    probs = torch.as_tensor(view.prior, dtype=torch.float64) * torch.as_tensor(view.allowed, dtype=torch.float64)
    if config.rollout_policy == "greedy":
        return int(probs.argmax())
    logits = probs.clamp_min(1e-30).log() / config.rollout_temperature
    logits[~torch.as_tensor(view.allowed)] = -float("inf")
    values, indices = logits.topk(min(config.rollout_top_k, int(view.allowed.sum())))
    pick = torch.multinomial(torch.softmax(values, dim=-1), 1, generator=generator)
    return int(indices[pick])
