"""The search model over cola-gym episodes: KV-cache reuse and batched decoding.

A search model is built for one env (:meth:`CoLASearchModel.for_env`): it takes the env's
:class:`~cola_gym.envs.stepper.EpisodeStepper` once, and its handles are branches of that
env's episodes: an :class:`~cola_gym.envs.episode.Episode` value (text and the task's own
state, so any task can be branched) and its :class:`~cola_gym.model.DecodingState`, which
holds the decoder's, the policy's and the Q-network's KV caches. Expanding a node is one
step of the stepper on its cached state (never a re-encoding of the prefix), and the states
of all nodes being expanded or rolled out, from every tree, are stacked into one batch: one
decoder step serves them all. Rollouts run the envs' own loop
(:func:`cola_gym.envs.rollout.rollout`).

The search's prior (the order it tries actions, PUCT's ``P`` and the rollout policy) is the
CoLA policy head's, or any :data:`PolicyPrior` given: a function of the env's observations,
such as an RL-trained agent's policy (:func:`~cola_agents.mcts.agent.sb3_policy_prior`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cola_agents.agents import base_env
from cola_agents.mcts.config import MCTSConfig
from cola_agents.mcts.interface import QPath, Rollout, StateView, Step, leaf_score, policy_action
from cola_gym.envs.episode import Episode
from cola_gym.envs.rollout import rollout
from cola_gym.envs.stepper import EpisodeStepper
from cola_gym.model import DecodingState
from cola_gym.model.decoding import stack_states

PolicyPrior = Callable[[np.ndarray], np.ndarray]
"""A prior over latent actions from observations: ``[R, size]`` as the env lays them out
(:meth:`~cola_gym.envs.stepper.EpisodeStepper.observations`) to probabilities ``[R, K]``."""


@dataclass(frozen=True)
class EpisodeHandle:
    """A branch of one episode.

    Attributes:
        episode: the branch's episode value.
        state: the branch's decoding state (batch of one).
        reward: the task reward earned when this branch finished the episode (else 0).
        q_path: the Q-network's values of the actions from the search's root to here.
    """

    episode: Episode
    state: DecodingState
    reward: float = 0.0
    q_path: QPath = field(default_factory=QPath)


class CoLASearchModel:
    """Batched :class:`~cola_agents.mcts.interface.SearchModel` over the episodes of one env.

    Args:
        stepper: the stepper of the env whose episodes it branches (its task scores the text).
        prior: the search's prior from the env's observations (``None``: the CoLA policy head's).
    """

    def __init__(self, stepper: EpisodeStepper, prior: PolicyPrior | None = None) -> None:
        if stepper.action_kind != "latent":
            raise ValueError("tree search takes latent actions: use a latent-action env, not a token twin")
        self.stepper = stepper
        self.prior = prior
        self.num_actions = stepper.model.num_actions
        self.decoder_calls = 0
        """Decoder calls made so far (expansion steps and rollout steps)."""
        self.decoder_rows = 0
        """Rows those calls batched, in all."""

    @classmethod
    def for_env(cls, env: Any, prior: PolicyPrior | None = None) -> CoLASearchModel:
        """The search model of ``env``: a cola-gym env or vector env (wrappers allowed)."""
        return cls(base_env(env).stepper, prior)

    def root(self, episode: Episode, state: DecodingState) -> tuple[EpisodeHandle, StateView]:
        """The search root at an episode and its decoding state (batch of one)."""
        if not state.tracks_policy:
            raise ValueError("tree search needs an env made with track_policy=True (and track_q=True with a Q-network)")
        handle = EpisodeHandle(episode=episode, state=state)
        return handle, self._views([episode], state)[0]

    def step(self, handles: Sequence[EpisodeHandle], actions: Sequence[int]) -> list[Step]:
        """One latent action per handle: one world-model call and one decoder call for all."""
        self.decoder_calls += 1
        self.decoder_rows += len(handles)
        result = self.stepper.step([h.episode for h in handles], stack_states([h.state for h in handles]), actions)
        views = self._views(result.booking.episodes, result.state)
        steps = []
        for row, (handle, action) in enumerate(zip(handles, actions, strict=True)):
            outcome, q_values = result.booking.outcomes[row], handle.state.q_values
            q = None if q_values is None else float(q_values[0, action])
            new = EpisodeHandle(episode=result.booking.episodes[row], state=result.state.select([row]),
                                reward=outcome.reward if outcome.terminated else 0.0,
                                q_path=handle.q_path.then(q))  # fmt: skip
            steps.append(Step(handle=new, token=int(result.booking.tokens[row]), view=views[row]))
        return steps

    def action_tokens(self, handles: Sequence[EpisodeHandle]) -> np.ndarray:
        """The token every latent action writes from each handle's state: one world-model call."""
        hidden = torch.cat([handle.state.hidden for handle in handles])
        return self.stepper.model.tokens_of_every_action(hidden).cpu().numpy()

    def rollout(
        self, handles: Sequence[EpisodeHandle], config: MCTSConfig, generator: torch.Generator
    ) -> list[Rollout]:
        """Rolls the policy out from every unfinished handle, batched; finished rows leave the batch."""
        results: list[Rollout | None] = [None] * len(handles)
        for i, handle in enumerate(handles):
            if handle.episode.done:
                results[i] = Rollout(score=leaf_score(handle.reward, handle.q_path, config), actions=[],
                                     finished=True, reward=handle.reward)  # fmt: skip
        going = [i for i, handle in enumerate(handles) if not handle.episode.done]
        if going:
            q_paths = [handles[i].q_path for i in going]

            def choose(rows: Sequence[int], episodes: Sequence[Episode], state: DecodingState) -> list[int]:
                self.decoder_calls += 1  # the step of these rows that follows
                self.decoder_rows += len(rows)
                chosen = [policy_action(view, config, generator) for view in self._views(episodes, state)]
                if state.q_values is not None:  # Q(s, a) of each row's steps score its leaf
                    for position, (row, action) in enumerate(zip(rows, chosen, strict=True)):
                        q_paths[row] = q_paths[row].then(float(state.q_values[position, action]))
                return chosen

            episodes = [handles[i].episode for i in going]
            states = stack_states([handles[i].state for i in going])
            rolled = rollout(self.stepper, episodes, states, choose, config.rollout_max_tokens)
            for row, (i, path) in enumerate(zip(going, rolled, strict=True)):
                results[i] = Rollout(leaf_score(path.reward, q_paths[row], config), path.actions, path.finished,
                                     path.reward, path.tokens, path.positions)  # fmt: skip
        return [r for r in results if r is not None]

    def _views(self, episodes: Sequence[Episode], state: DecodingState) -> list[StateView]:
        """What the search sees of every row of ``state``, where ``episodes`` stand (one prior call)."""
        if self.prior is None:
            assert state.policy_logits is not None
            priors = torch.softmax(state.policy_logits.float(), -1).cpu().numpy()
        else:
            priors = np.asarray(self.prior(self.stepper.observations(state)))
            if priors.shape != (len(episodes), self.num_actions):
                raise ValueError(f"the search's prior gave shape {priors.shape}, expected "
                                 f"{(len(episodes), self.num_actions)}: one probability per latent action")  # fmt: skip
        q_values = None if state.q_values is None else state.q_values.float().cpu().numpy()
        views = []
        for row, episode in enumerate(episodes):
            allowed = self.stepper.action_mask(episode)[: self.num_actions]
            views.append(StateView(prior=priors[row].astype(np.float64), allowed=allowed,
                                   q_values=None if q_values is None else q_values[row],
                                   finished=episode.done))  # fmt: skip
        return views
