"""The search model over cola-gym episodes: KV-cache reuse and batched decoding.

A handle is a branch of an episode: its :class:`~cola_gym.envs.episode.Episode` value (text
and the task's own state, so any task can be branched) and its
:class:`~cola_gym.model.DecodingState`, which holds the decoder's, the policy's and the
Q-network's KV caches. Expanding a node is one step of the env's own
:class:`~cola_gym.envs.stepper.EpisodeStepper` on its cached state (never a re-encoding of
the prefix), and the states of all nodes being expanded or rolled out, from every tree,
are stacked into one batch: one decoder step serves them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cola_agents.mcts.config import MCTSConfig
from cola_agents.mcts.interface import Rollout, StateView, Step, policy_action
from cola_gym.envs.episode import Episode
from cola_gym.envs.stepper import EpisodeStepper
from cola_gym.model import CoLAModel, DecodingState
from cola_gym.model.decoding import stack_states


@dataclass(frozen=True)
class EpisodeHandle:
    """A branch of one episode.

    Attributes:
        stepper: the stepper of the episode's env (its task scores the text).
        episode: the branch's episode value.
        state: the branch's decoding state (batch of one).
        reward: the task reward earned when this branch finished the episode (else 0).
        last_q: Q(s, a) of the transition that led here (``None`` at the root or without Q).
    """

    stepper: EpisodeStepper
    episode: Episode
    state: DecodingState
    reward: float = 0.0
    last_q: float | None = None


class CoLASearchModel:
    """Batched :class:`~cola_agents.mcts.interface.SearchModel` over a CoLA model and task episodes."""

    def __init__(self, model: CoLAModel) -> None:
        self.model = model
        self.num_actions = model.num_actions

    def root(self, stepper: EpisodeStepper, episode: Episode, state: DecodingState) -> tuple[EpisodeHandle, StateView]:
        """The search root at an episode and its decoding state (batch of one)."""
        if not state.tracks_policy:
            raise ValueError("tree search needs an env made with track_policy=True (and track_q=True with a Q-network)")
        handle = EpisodeHandle(stepper=stepper, episode=episode, state=state)
        return handle, self._view(handle, 0)

    def step(self, handles: Sequence[EpisodeHandle], actions: Sequence[int]) -> list[Step]:
        """One latent action per handle: one world-model call and one decoder call for all."""
        stepper = _one_stepper(handles)
        result = stepper.step([h.episode for h in handles], stack_states([h.state for h in handles]), actions)
        steps = []
        for row, (handle, action) in enumerate(zip(handles, actions, strict=True)):
            outcome, q_values = result.booking.outcomes[row], handle.state.q_values
            new = EpisodeHandle(stepper=stepper, episode=result.booking.episodes[row],
                                state=result.state.select([row]), reward=outcome.reward if outcome.terminated else 0.0,
                                last_q=None if q_values is None else float(q_values[0, action]))  # fmt: skip
            steps.append(Step(handle=new, token=int(result.booking.tokens[row]), view=self._view(new, 0)))
        return steps

    def rollout(
        self, handles: Sequence[EpisodeHandle], config: MCTSConfig, generator: torch.Generator
    ) -> list[Rollout]:
        """Rolls the policy out from every unfinished handle, batched; finished rows leave the batch."""
        results: list[Rollout | None] = [None] * len(handles)
        rows = [i for i, h in enumerate(handles) if not h.episode.done]
        for i, handle in enumerate(handles):
            if handle.episode.done:
                results[i] = Rollout(score=self._score(handle.reward, handle.last_q, config), actions=[],
                                     finished=True, reward=handle.reward)  # fmt: skip
        if not rows:
            return [r for r in results if r is not None]
        stepper = _one_stepper(handles)
        batch = stack_states([handles[i].state for i in rows])
        episodes = {i: handles[i].episode for i in rows}
        actions: dict[int, list[int]] = {i: [] for i in rows}
        consumed: dict[int, list[int]] = {i: [] for i in rows}
        positions: dict[int, list[int]] = {i: [] for i in rows}
        last_q = {i: handles[i].last_q for i in rows}
        for _ in range(config.rollout_max_tokens):
            views = [
                self._view(EpisodeHandle(stepper, episodes[i], batch), position) for position, i in enumerate(rows)
            ]
            chosen = [policy_action(view, config, generator) for view in views]
            booking = stepper.decide([episodes[i] for i in rows], batch, chosen)
            feeds, keep = [], []
            for position, (i, action) in enumerate(zip(rows, chosen, strict=True)):
                if batch.q_values is not None:
                    last_q[i] = float(batch.q_values[position, action])
                actions[i].append(action)
                positions[i].append(len(consumed[i]))
                episodes[i], outcome = booking.episodes[position], booking.outcomes[position]
                if outcome.terminated:
                    score = self._score(outcome.reward, last_q[i], config)
                    results[i] = Rollout(score, actions[i], True, outcome.reward, consumed[i], positions[i])
                else:
                    feeds.append(list(outcome.feed))
                    consumed[i].extend(outcome.feed)
                    keep.append(position)
            if not keep:
                rows = []
                break
            batch = stepper.feed(batch.select(keep), feeds)
            rows = [rows[p] for p in keep]
        for i in rows:  # the token limit cut these rollouts short: no answer
            results[i] = Rollout(self._score(0.0, last_q[i], config), actions[i], False, 0.0, consumed[i],
                                 positions[i])  # fmt: skip
        return [r for r in results if r is not None]

    def _score(self, reward: float, last_q: float | None, config: MCTSConfig) -> float:
        if config.leaf_value == "oracle":
            return float(reward)
        return 0.0 if last_q is None else float(last_q)

    def _view(self, handle: EpisodeHandle, row: int) -> StateView:
        state = handle.state
        assert state.policy_logits is not None
        prior = torch.softmax(state.policy_logits[row].float(), -1).cpu().numpy()
        q_values = None if state.q_values is None else state.q_values[row].float().cpu().numpy()
        allowed = handle.stepper.action_mask(handle.episode)[: self.num_actions]
        return StateView(prior=prior.astype(np.float64), allowed=allowed, q_values=q_values,
                         finished=handle.episode.done)  # fmt: skip


def _one_stepper(handles: Sequence[EpisodeHandle]) -> EpisodeStepper:
    stepper = handles[0].stepper
    if any(h.stepper is not stepper for h in handles):
        raise ValueError("handles searched together must come from one env or vector env")
    return stepper
