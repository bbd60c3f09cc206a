"""Planning agents with SB3's ``predict()``: MCTS-Q and best-of-N, for single and vector envs.

An agent is *bound* to the env it acts in (``agent.bind(env)``; the shared evaluation
does it), because planning needs the env's episodes and decoding state, not only the
observation; binding builds its search model for that env
(:meth:`~cola_agents.mcts.env_model.CoLASearchModel.for_env`). At the first step of an
episode it plans the whole answer (batched over all rows of a vector env), then replays
the plan one latent action per ``predict`` call; if the episode outlives the plan, it
plans again from where it stands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cola_agents.agents import EnvOrVectorEnv, base_env
from cola_agents.mcts.config import MCTSConfig
from cola_agents.mcts.env_model import CoLASearchModel, EpisodeHandle, PolicyPrior
from cola_agents.mcts.interface import StateView, policy_action
from cola_agents.mcts.search import SearchRecord, SearchResult, search
from cola_gym.envs.episode import Episode
from cola_gym.envs.observation import ObservationLayout
from cola_gym.model import CoLAModel

LOGGER = logging.getLogger(__name__)


@dataclass
class _Plan:
    episode: int
    start_tokens: int
    actions: list[int]


@dataclass
class PlanningStats:
    """What the agent spent and how fast: searches run, tree nodes created, decoder tokens
    (expansions and rollouts), wall time, the decoder calls with the rows they batched, and a
    :class:`SearchRecord` per search (``results``)."""

    searches: int = 0
    tokens: int = 0
    nodes: int = 0
    seconds: float = 0.0
    decoder_calls: int = 0
    decoder_rows: int = 0
    results: list[SearchRecord] = field(default_factory=list)

    @property
    def nodes_per_s(self) -> float:
        return self.nodes / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def rows_per_call(self) -> float:
        """Decoder batch fill: rows per decoder call (expansions and rollout steps together)."""
        return self.decoder_rows / self.decoder_calls if self.decoder_calls else 0.0

    def summary(self) -> dict[str, float]:
        """The speed figures, for logs and benchmark files."""
        return {"searches": self.searches, "nodes": self.nodes, "tokens": self.tokens, "seconds": self.seconds,
                "nodes_per_s": self.nodes_per_s, "tokens_per_s": self.tokens_per_s,
                "rows_per_decoder_call": self.rows_per_call}  # fmt: skip


def sb3_policy_prior(agent: Any, num_actions: int) -> PolicyPrior:
    """An SB3 agent's policy as a search's prior: its action probabilities at each observation.

    Args:
        agent: a trained SB3 agent over the latent codes (PPO, A2C, MaskablePPO, ... with a
            categorical policy; a recurrent policy needs its memory, which a tree does not keep).
        num_actions: K, the latent codes of the model it searches with.

    Raises:
        ValueError: the agent is recurrent, has no categorical policy, or acts over another
            number of actions (a token twin's agent).
    """
    policy = getattr(agent, "policy", None)
    if policy is None or not hasattr(policy, "get_distribution"):
        raise ValueError(f"{type(agent).__name__} has no actor-critic policy to search with (PPO, A2C, MaskablePPO)")
    if getattr(policy, "lstm_actor", None) is not None:
        raise ValueError("a recurrent policy needs its memory, which a search tree does not keep: use PPO or A2C")
    actions = getattr(agent.action_space, "n", None)
    if actions != num_actions:
        raise ValueError(f"the agent acts over {actions} actions, the search over {num_actions} latent codes "
                         "(an agent of a token twin cannot be a latent search's prior)")  # fmt: skip
    policy.set_training_mode(False)

    def prior(observations: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            tensor = torch.as_tensor(observations, dtype=torch.float32, device=policy.device)
            return policy.get_distribution(tensor).distribution.probs.double().cpu().numpy()

    return prior


class PlanningAgentBase:
    """Binds to an env, plans per episode, replays plans through ``predict``.

    Args:
        model: the CoLA model of the envs it acts in (``env.unwrapped.model``).
        config: search hyperparameters (the paper's by default; ``leaf_value="q_network"``
            needs a model with a Q-network, ``"oracle"`` scores rollouts with the env's reward).
        prior_agent: an RL-trained SB3 agent whose policy replaces the CoLA policy head as the
            prior (the order actions are tried, PUCT's ``P``, the rollouts and the samples);
            its envs are then made with the observation it was trained on.
    """

    def __init__(self, model: CoLAModel, config: MCTSConfig | None = None, prior_agent: Any = None) -> None:
        self.config = config or MCTSConfig()
        self.prior = None if prior_agent is None else sb3_policy_prior(prior_agent, model.num_actions)
        self.prior_observation: dict[str, Any] = {}
        if prior_agent is not None and ObservationLayout.of(prior_agent.observation_space).prior:
            self.prior_observation = {"observation": "hidden+prior"}
        self.has_q = model.q_network is not None
        if self.config.leaf_value == "q_network" and not self.has_q:
            raise ValueError(
                "leaf_value='q_network' (honest search) needs a model with a Q-network (cola-gym train --stage q); "
                "use MCTSConfig(leaf_value='oracle') for an upper bound with the env's reward"
            )
        self.env: EnvOrVectorEnv | None = None
        self.search_model: CoLASearchModel | None = None
        self.plans: dict[int, _Plan] = {}
        self.idle_rows: set[int] = set()
        self.stats = PlanningStats()

    def env_kwargs(self) -> dict[str, Any]:
        """Env arguments this agent needs (``evaluate`` and ``make_sb3_env`` merge them)."""
        return {"track_policy": True, "track_q": self.has_q, **self.prior_observation}

    def bind(self, env: Any) -> None:
        """Acts in ``env`` from now on: a cola-gym env or vector env (wrappers allowed)."""
        self.env = base_env(env)
        self.search_model = CoLASearchModel.for_env(self.env, self.prior)
        self.plans, self.idle_rows = {}, set()

    def set_idle_rows(self, rows: Iterable[int]) -> None:
        """Rows whose episodes no longer matter (an evaluation is done with them): they get the
        prior's best allowed action and are never searched for."""
        self.idle_rows = {int(row) for row in rows}

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:  # fmt: skip
        """The next latent action of every bound row (SB3's signature; the observation is not needed)."""
        if self.env is None:
            raise RuntimeError("bind the agent to its env first: agent.bind(env)")
        episodes = self.env.episodes
        stale = [row for row, episode in enumerate(episodes)
                 if row not in self.idle_rows and not self._plan_covers(row, episode)]  # fmt: skip
        if stale:
            roots = [self._root(row) for row in stale]
            for row, actions in zip(stale, self._timed_plan(roots), strict=True):
                self.plans[row] = _Plan(episodes[row].number, episodes[row].num_tokens, actions)
        actions = []
        for row, episode in enumerate(episodes):
            if row in self.idle_rows:
                actions.append(_argmax_allowed(self._root(row)[1]))
                continue
            plan = self.plans[row]
            actions.append(plan.actions[episode.num_tokens - plan.start_tokens])
        array = np.array(actions, dtype=np.int64)
        return (array if np.ndim(observation) > 1 else array[0]), None

    def _plan_covers(self, row: int, episode: Episode) -> bool:
        plan = self.plans.get(row)
        return (
            plan is not None
            and plan.episode == episode.number
            and 0 <= episode.num_tokens - plan.start_tokens < len(plan.actions)
        )

    def _timed_plan(self, roots: Sequence[tuple[EpisodeHandle, StateView]]) -> list[list[int]]:
        """:meth:`_plan`, with its wall time and decoder calls added to :attr:`stats` (and logged)."""
        assert self.search_model is not None
        model, started = self.search_model, time.perf_counter()
        calls, rows = model.decoder_calls, model.decoder_rows
        plans = self._plan(roots)
        seconds = time.perf_counter() - started
        self.stats.seconds += seconds
        self.stats.decoder_calls += model.decoder_calls - calls
        self.stats.decoder_rows += model.decoder_rows - rows
        if seconds > 0:
            LOGGER.info(
                "%s: %d roots in %.2f s, %.0f tokens/s, %.1f rows per decoder call",
                type(self).__name__, len(roots), seconds, self.stats.tokens_per_s, self.stats.rows_per_call,
            )  # fmt: skip
        return plans

    def _root(self, row: int) -> tuple[EpisodeHandle, StateView]:
        assert self.env is not None and self.search_model is not None
        state = self.env.decoding_state
        assert state is not None
        return self.search_model.root(self.env.episodes[row], state.select([row]))

    def _plan(self, roots: Sequence[tuple[EpisodeHandle, StateView]]) -> list[list[int]]:
        """One action sequence per root."""
        raise NotImplementedError


class MCTSAgent(PlanningAgentBase):
    """MCTS-Q over latent actions (see :mod:`cola_agents.mcts.search`).

    Args:
        model: the CoLA model of the envs it acts in (``env.unwrapped.model``).
        config: search hyperparameters (the paper's by default; ``leaf_value="q_network"``
            needs a model with a Q-network, ``"oracle"`` scores rollouts with the env's reward).
        prior_agent: an RL-trained SB3 agent to search from instead of the CoLA policy head.
    """

    def _plan(self, roots: Sequence[tuple[EpisodeHandle, StateView]]) -> list[list[int]]:
        assert self.search_model is not None
        results: list[SearchResult] = search(self.search_model, roots, self.config)
        self.stats.searches += len(results)
        self.stats.tokens += sum(result.tokens for result in results)
        self.stats.nodes += sum(result.simulations for result in results)
        self.stats.results.extend(result.record() for result in results)  # the trees hold KV caches
        # a root with nothing to search from falls back to the prior's best allowed action
        return [result.actions or [_argmax_allowed(root[1])] for result, root in zip(results, roots, strict=True)]


class BestOfNAgent(PlanningAgentBase):
    """Best-of-N: N policy samples per problem (batched), the best by the leaf score.

    Args:
        model: the CoLA model of the envs it acts in.
        num_samples: N.
        config: sampling (``rollout_policy``, ``rollout_top_k``, ``rollout_temperature``,
            ``rollout_max_tokens``), scoring (``leaf_value``) and ``token_budget`` (samples
            stop once it is spent), shared with MCTS so the two compare at equal budgets
            (``leaf_value="q_network"`` needs a model with a Q-network).
        prior_agent: an RL-trained SB3 agent to sample from instead of the CoLA policy head.
    """

    def __init__(
        self, model: CoLAModel, num_samples: int = 8, config: MCTSConfig | None = None, prior_agent: Any = None
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        super().__init__(model, config, prior_agent)
        self.num_samples = num_samples

    def _plan(self, roots: Sequence[tuple[EpisodeHandle, StateView]]) -> list[list[int]]:
        assert self.search_model is not None
        generator = torch.Generator().manual_seed(self.config.seed)
        best: list[tuple[float, list[int]]] = [(-np.inf, []) for _ in roots]
        spent, drawn = [0] * len(roots), [0] * len(roots)
        budget, longest = self.config.token_budget, self.config.rollout_max_tokens
        while True:
            # as many samples per root at once as the rest of its budget surely pays for
            batch: list[int] = []
            for i in range(len(roots)):
                if drawn[i] >= self.num_samples or (budget is not None and spent[i] >= budget):
                    continue
                affordable = self.num_samples if budget is None else max(1, (budget - spent[i]) // longest)
                batch += [i] * min(self.num_samples - drawn[i], affordable)
            if not batch:
                break
            handles: list[EpisodeHandle] = [roots[i][0] for i in batch]
            for i, rollout in zip(batch, self.search_model.rollout(handles, self.config, generator), strict=True):
                drawn[i] += 1
                spent[i] += len(rollout.actions)
                if rollout.score > best[i][0]:
                    best[i] = (rollout.score, rollout.actions)
        self.stats.searches += len(roots)
        self.stats.tokens += sum(spent)
        return [actions or [_argmax_allowed(root[1])] for (_, actions), root in zip(best, roots, strict=True)]


def _argmax_allowed(view: StateView) -> int:
    return policy_action(view, MCTSConfig(rollout_policy="greedy"), torch.Generator())
