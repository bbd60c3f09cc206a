"""The search model over cola-gym envs: KV-cache reuse and batched decoding.

A handle is a branch of an episode: the task env that books its text (one env per
problem; its text side is restored from the handle before each token) and the branch's
:class:`~cola_gym.model.DecodingState`, which holds the decoder's, the policy's and the
Q-network's KV caches. Expanding a node appends one token to its cached state (never a
re-encoding of the prefix), and the states of all nodes being expanded or rolled out,
from every tree, are stacked into one batch: one decoder step serves them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cola_agents.mcts.config import MCTSConfig
from cola_agents.mcts.interface import Rollout, StateView, Step, policy_action
from cola_gym.envs.base import EpisodeText, LatentActionEnv
from cola_gym.model import CoLAModel, DecodingState
from cola_gym.model.decoding import stack_states
from cola_gym.model.generation import left_pad


@dataclass(frozen=True)
class EnvHandle:
    """A branch of one episode.

    Attributes:
        env: the task env of the episode (books text, judges answers).
        text: the branch's text side.
        state: the branch's decoding state (batch of one).
        reward: the task reward earned when this branch finished the episode (else 0).
        last_q: Q(s, a) of the transition that led here (``None`` at the root or without Q).
    """

    env: LatentActionEnv
    text: EpisodeText
    state: DecodingState
    reward: float = 0.0
    last_q: float | None = None


class CoLASearchModel:
    """Batched :class:`~cola_agents.mcts.interface.SearchModel` over a CoLA model and task envs."""

    def __init__(self, model: CoLAModel) -> None:
        self.model = model
        self.num_actions = model.num_actions

    def root(self, env: LatentActionEnv, state: DecodingState | None = None) -> tuple[EnvHandle, StateView]:
        """The search root at an env's current point (``state``: its row of a vector env's batch)."""
        state = state if state is not None else env.decoding_state
        if state is None or not state.tracks_policy:
            raise ValueError("tree search needs an env made with track_policy=True (and track_q=True with a Q-network)")
        handle = EnvHandle(env=env, text=env.text_snapshot(), state=state)
        return handle, self._view(handle, 0)

    def step(self, handles: Sequence[EnvHandle], actions: Sequence[int]) -> list[Step]:
        """One latent action per handle: one world-model call and one decoder call for all."""
        batch = stack_states([h.state for h in handles])
        tokens = self.model.next_tokens(batch, torch.tensor(list(actions))).tolist()
        feeds, texts, rewards, finished = [], [], [], []
        for handle, token in zip(handles, tokens, strict=True):
            handle.env.restore_text(handle.text)
            outcome = handle.env.consume_token(token)
            feeds.append(list(outcome.feed))
            texts.append(handle.env.text_snapshot())
            rewards.append(outcome.reward if outcome.terminated else 0.0)
            finished.append(outcome.terminated)
        batch = self._feed(batch, feeds)
        steps = []
        for row, (handle, action) in enumerate(zip(handles, actions, strict=True)):
            q_values = handle.state.q_values
            new = EnvHandle(env=handle.env, text=texts[row], state=batch.select([row]), reward=rewards[row],
                            last_q=None if q_values is None else float(q_values[0, action]))  # fmt: skip
            steps.append(Step(handle=new, token=int(tokens[row]), view=self._view(new, 0)))
        return steps

    def rollout(self, handles: Sequence[EnvHandle], config: MCTSConfig, generator: torch.Generator) -> list[Rollout]:
        """Rolls the policy out from every unfinished handle, batched; finished rows leave the batch."""
        results: list[Rollout | None] = [None] * len(handles)
        rows = [i for i, h in enumerate(handles) if not h.text.done]
        for i, handle in enumerate(handles):
            if handle.text.done:
                results[i] = Rollout(score=self._score(handle, handle.reward, handle.last_q, config), actions=[],
                                     finished=True, reward=handle.reward)  # fmt: skip
        if not rows:
            return [r for r in results if r is not None]
        batch = stack_states([handles[i].state for i in rows])
        texts = {i: handles[i].text for i in rows}
        actions: dict[int, list[int]] = {i: [] for i in rows}
        consumed: dict[int, list[int]] = {i: [] for i in rows}
        positions: dict[int, list[int]] = {i: [] for i in rows}
        last_q = {i: handles[i].last_q for i in rows}
        for _ in range(config.rollout_max_tokens):
            views = [
                self._view(EnvHandle(handles[i].env, texts[i], batch), position) for position, i in enumerate(rows)
            ]
            chosen = [policy_action(view, config, generator) for view in views]
            tokens = self.model.next_tokens(batch, torch.tensor(chosen)).tolist()
            feeds, keep = [], []
            for position, (i, action, token) in enumerate(zip(rows, chosen, tokens, strict=True)):
                if batch.q_values is not None:
                    last_q[i] = float(batch.q_values[position, action])
                actions[i].append(action)
                positions[i].append(len(consumed[i]))
                env = handles[i].env
                env.restore_text(texts[i])
                outcome = env.consume_token(token)
                texts[i] = env.text_snapshot()
                if outcome.terminated:
                    score = self._score(handles[i], outcome.reward, last_q[i], config)
                    results[i] = Rollout(score, actions[i], True, outcome.reward, consumed[i], positions[i])
                else:
                    feeds.append(list(outcome.feed))
                    consumed[i].extend(outcome.feed)
                    keep.append(position)
            if not keep:
                rows = []
                break
            batch = self._feed(batch.select(keep), feeds)
            rows = [rows[p] for p in keep]
        for i in rows:  # the token limit cut these rollouts short: no answer
            results[i] = Rollout(self._score(handles[i], 0.0, last_q[i], config), actions[i], False, 0.0, consumed[i],
                                 positions[i])  # fmt: skip
        return [r for r in results if r is not None]

    def _score(self, handle: EnvHandle, reward: float, last_q: float | None, config: MCTSConfig) -> float:
        if config.leaf_value == "oracle":
            return float(reward)
        return 0.0 if last_q is None else float(last_q)

    def _view(self, handle: EnvHandle, row: int) -> StateView:
        state = handle.state
        assert state.policy_logits is not None
        handle.env.restore_text(handle.text)
        prior = torch.softmax(state.policy_logits[row].float(), -1).cpu().numpy()
        q_values = None if state.q_values is None else state.q_values[row].float().cpu().numpy()
        allowed = handle.env.action_masks()[: self.num_actions].astype(bool)
        return StateView(prior=prior.astype(np.float64), allowed=allowed, q_values=q_values, finished=handle.text.done)

    def _feed(self, batch: DecodingState, feeds: Sequence[Sequence[int]]) -> DecodingState:
        """Appends each row's tokens in one decoder call; rows with none keep their state."""
        has_tokens = torch.tensor([len(f) > 0 for f in feeds])
        if not has_tokens.any():
            return batch
        ids, mask = left_pad(feeds)
        appended = self.model.append(batch, ids, mask)
        return appended if has_tokens.all() else appended.keep_rows_where(has_tokens, batch)
