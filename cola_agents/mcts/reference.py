"""A re-encoding reference search model: what the authors' release does, one node at a time.

Every expansion and every rollout token runs the decoder (and the policy and Q heads)
over the whole text prefix, without caches or batching. It implements the same
:class:`~cola_agents.mcts.interface.SearchModel` as :class:`CoLASearchModel` and is built
for an env the same way (:meth:`ReencodingSearchModel.for_env`), so the same search run on
both must build the same tree; benchmarks measure what caching saves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cola_agents.agents import base_env
from cola_agents.mcts.config import MCTSConfig
from cola_agents.mcts.interface import QPath, Rollout, StateView, Step, leaf_score, policy_action
from cola_gym.envs.episode import Episode
from cola_gym.envs.stepper import EpisodeStepper


@dataclass(frozen=True)
class TokenHandle:
    """A branch as plain token ids (every consumed token), with its episode value."""

    episode: Episode
    ids: tuple[int, ...]
    reward: float = 0.0
    q_path: QPath = field(default_factory=QPath)


class ReencodingSearchModel:
    """The search model without KV caches: O(prefix) work per token.

    Args:
        stepper: the stepper of the env whose episodes it branches (its task scores the text).
    """

    def __init__(self, stepper: EpisodeStepper) -> None:
        self.stepper = stepper
        self.model = stepper.model
        self.num_actions = stepper.model.num_actions

    @classmethod
    def for_env(cls, env: Any) -> ReencodingSearchModel:
        """The re-encoding search model of ``env``: a cola-gym env or vector env (wrappers allowed)."""
        return cls(base_env(env).stepper)

    def root(self, episode: Episode, state: Sequence[int]) -> tuple[TokenHandle, StateView]:
        """The root: an episode and its state, here every token its decoder consumed so far."""
        handle = TokenHandle(episode=episode, ids=tuple(state))
        return handle, self._view(handle)[0]

    @torch.inference_mode()
    def step(self, handles: Sequence[TokenHandle], actions: Sequence[int]) -> list[Step]:
        """One action per handle, each re-encoding its whole prefix."""
        steps = []
        for handle, action in zip(handles, actions, strict=True):
            view, hidden = self._view(handle)
            code = self.model.codebook(torch.tensor([action], device=self.model.device))
            token = int(self.model.world_model_logits(hidden, code).argmax())
            booking = self.stepper.consume([handle.episode], [token])
            outcome = booking.outcomes[0]
            q = None if view.q_values is None else float(view.q_values[action])
            new = TokenHandle(episode=booking.episodes[0], ids=handle.ids + outcome.feed,
                              reward=outcome.reward if outcome.terminated else 0.0,
                              q_path=handle.q_path.then(q))  # fmt: skip
            steps.append(Step(handle=new, token=token, view=self._view(new)[0]))
        return steps

    @torch.inference_mode()
    def action_tokens(self, handles: Sequence[TokenHandle]) -> np.ndarray:
        """The token every latent action writes from each handle's state, each re-encoded."""
        hidden = torch.cat([self._view(handle)[1] for handle in handles])
        return self.model.tokens_of_every_action(hidden).cpu().numpy()

    @torch.inference_mode()
    def rollout(self, handles: Sequence[TokenHandle], config: MCTSConfig, generator: torch.Generator) -> list[Rollout]:
        """Rolls out each handle in turn, re-encoding the prefix for every token."""
        results = []
        for handle in handles:
            actions: list[int] = []
            current, finished = handle, handle.episode.done
            while not finished and len(actions) < config.rollout_max_tokens:
                view = self._view(current)[0]
                action = policy_action(view, config, generator)
                actions.append(action)
                current = self.step([current], [action])[0].handle
                finished = current.episode.done
            score = leaf_score(current.reward if finished else 0.0, current.q_path, config)
            results.append(Rollout(score=score, actions=actions, finished=finished,
                                   reward=current.reward if finished else 0.0))  # fmt: skip
        return results

    def _view(self, handle: TokenHandle) -> tuple[StateView, torch.Tensor]:
        """The state's view and its last ``h`` ``[1, d]``, from a full re-encoding."""
        model = self.model
        with torch.inference_mode():
            hidden = model.hidden_states(torch.tensor([handle.ids]))
            prior = torch.softmax(model.policy_logits(hidden)[0, -1].float(), -1).cpu().numpy()
            q_values = None
            if model.q_network is not None:
                q_values = model.q_network(hidden.to(model.head_dtype))[0, -1].float().cpu().numpy()
        allowed = self.stepper.action_mask(handle.episode)[: self.num_actions]
        view = StateView(prior=prior.astype(np.float64), allowed=allowed, q_values=q_values,
                         finished=handle.episode.done)  # fmt: skip
        return view, hidden[:, -1]
