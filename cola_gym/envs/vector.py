"""A Gymnasium vector env that advances N episodes with one batched decoder step.

``gym.make_vec("CoLA-GSM8K-v0", num_envs=N)`` builds this: N task envs keep the text
side of their episodes (problem, turns, rewards) while one left-padded batch of KV caches
holds their decoding state. Each step is one world-model call and one decoder call for
all rows; a row whose episode ends is reset in the same step (same-step autoreset: the
returned observation starts the next episode, the last one is in ``info["final_obs"]``)
by prefilling its new prompt and splicing it into the batch.

It behaves exactly like N single envs stepped with the same actions
(``gym.vector.SyncVectorEnv`` with ``AutoresetMode.SAME_STEP``), at batched speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from cola_gym.envs.base import LatentActionEnv
from cola_gym.errors import EpisodeOverError
from cola_gym.model.decoding import DecodingState
from cola_gym.model.generation import left_pad


@dataclass
class RowStep:
    """One row's share of a vector step (what SB3's ``VecEnv`` wants, row by row)."""

    observation: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    final_observation: np.ndarray | None = None
    final_info: dict[str, Any] | None = None


class LatentActionVectorEnv(gym.vector.VectorEnv):
    """N episodes of one task, decoded as one batch.

    Args:
        num_envs: N.
        max_episode_steps: the step limit of each episode (truncation), as for single envs.
        **env_kwargs: arguments of the task env (``model``, ``data_dir``, ...).

    Subclasses set :attr:`env_class`, the single-env task class.
    """

    env_class: ClassVar[type[LatentActionEnv]]
    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # type: ignore[misc]

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, **env_kwargs: Any) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        self.envs = [self.env_class(**env_kwargs) for _ in range(num_envs)]
        first = self.envs[0]
        self.model = first.model
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.single_action_space = first.action_space
        self.single_observation_space = first.observation_space
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.render_mode = first.render_mode
        self._state: DecodingState | None = None
        self._steps = np.zeros(num_envs, dtype=np.int64)

    # ------------------------------------------------------------ Gymnasium vector API
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | Sequence[dict[str, Any] | None] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts N episodes with one batched prefill.

        Args:
            seed: an int s seeds env i with s + i; or one seed per env.
            options: one dict for every env, or one per env.
        """
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
        per_env = [options] * self.num_envs if options is None or isinstance(options, dict) else list(options)
        if len(seeds) != self.num_envs or len(per_env) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds and {len(per_env)} options for {self.num_envs} envs")
        prompts = [
            env.begin_episode(seed=s, options=o or None) for env, s, o in zip(self.envs, seeds, per_env, strict=True)
        ]
        self._state = self._prefill(prompts)
        self._steps[:] = 0
        observations = self._observations()
        infos: dict[str, Any] = {}
        for row, env in enumerate(self.envs):
            infos = self._add_info(infos, env.current_info(), row)
        return observations, infos

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One token for every row; ended episodes restart in the same step."""
        rows = self.step_rows(actions)
        infos: dict[str, Any] = {}
        for row, result in enumerate(rows):
            if result.final_observation is not None:
                infos = self._add_info(infos, {"final_obs": result.final_observation,
                                               "final_info": result.final_info}, row)  # fmt: skip
            infos = self._add_info(infos, result.info, row)
        return (
            np.stack([r.observation for r in rows]),
            np.array([r.reward for r in rows], dtype=np.float64),
            np.array([r.terminated for r in rows], dtype=np.bool_),
            np.array([r.truncated for r in rows], dtype=np.bool_),
            infos,
        )

    def action_masks(self) -> np.ndarray:
        """``bool[N, num_actions]``, each row's allowed actions."""
        return np.stack([env.action_masks() for env in self.envs])

    def render(self) -> tuple[str, ...] | None:
        """Each row's rendering (``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        return tuple(env.render() or "" for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release: the model is shared by the process."""
        self._state = None

    # ------------------------------------------------------------ the batched step
    def step_rows(self, actions: Any) -> list[RowStep]:
        """The step, row by row (used by :meth:`step` and by the SB3 adapter)."""
        if self._state is None:
            raise EpisodeOverError("step() called before reset(); call reset() first.")
        codes = self._check_actions(actions)
        state = self._state
        if self.envs[0].action_kind == "token":
            tokens = codes
        else:
            tokens = self.model.next_tokens(state, torch.tensor(codes)).tolist()
            for row, env in enumerate(self.envs):
                logits = None if state.policy_logits is None else state.policy_logits[row : row + 1]
                env.record_prior(logits, codes[row])
        outcomes = [env.consume_token(token) for env, token in zip(self.envs, tokens, strict=True)]
        self._steps += 1
        state = self._feed([o.feed for o in outcomes])
        self._state = state
        lengths = state.attention_mask.sum(-1).tolist()
        results: list[RowStep] = []
        ended: list[int] = []
        for row, (env, outcome) in enumerate(zip(self.envs, outcomes, strict=True)):
            # as gymnasium's TimeLimit: the step limit truncates even a terminating step
            at_limit = bool(self.max_episode_steps and self._steps[row] >= self.max_episode_steps)
            truncated = at_limit or (not outcome.terminated and env.truncate_if_context_full(int(lengths[row])))
            results.append(RowStep(self._observation(row), env.step_reward(outcome), outcome.terminated, truncated,
                                   env.current_info()))  # fmt: skip
            if outcome.terminated or truncated:
                ended.append(row)
        if ended:
            self._autoreset(ended, results)
        return results

    def _autoreset(self, rows: list[int], results: list[RowStep]) -> None:
        for row in rows:
            results[row].final_observation, results[row].final_info = results[row].observation, results[row].info
        prompts = [self.envs[row].begin_episode() for row in rows]
        assert self._state is not None
        self._state = self._state.replace_rows(rows, self._prefill(prompts))
        self._steps[rows] = 0
        for row in rows:
            results[row].observation = self._observation(row)
            results[row].info = self.envs[row].current_info()

    def _check_actions(self, actions: Any) -> list[int]:
        array = np.asarray(actions)
        if array.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions (one per env), got an array of shape {array.shape}")
        return [env.check_action(action) for env, action in zip(self.envs, array, strict=True)]

    def _prefill(self, prompts: Sequence[Sequence[int]]) -> DecodingState:
        ids, mask = left_pad(prompts)
        return self.model.start(ids, mask, track_policy=self.envs[0].track_policy, track_q=self.envs[0].track_q)

    def _feed(self, feeds: Sequence[Sequence[int]]) -> DecodingState:
        """Appends each row's tokens in one decoder call (rows with none get padding)."""
        assert self._state is not None
        has_tokens = torch.tensor([len(f) > 0 for f in feeds])
        if not has_tokens.any():
            return self._state
        ids, mask = left_pad(feeds)
        appended = self.model.append(self._state, ids, mask)
        if has_tokens.all():
            return appended
        return appended.keep_rows_where(has_tokens, self._state)

    def _observation(self, row: int) -> np.ndarray:
        assert self._state is not None
        logits = None if self._state.policy_logits is None else self._state.policy_logits[row]
        return self.envs[row].observation_of(self._state.hidden[row], logits)

    def _observations(self) -> np.ndarray:
        return np.stack([self._observation(row) for row in range(self.num_envs)])

    @property
    def decoding_state(self) -> DecodingState | None:
        """The batch's decoding state (rows in env order)."""
        return self._state
