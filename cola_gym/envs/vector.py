"""A Gymnasium vector env that advances N episodes of any task with one batched decoder step.

``gym.make_vec("CoLA-GSM8K-v0", num_envs=N)`` builds this for every registered id: N
:class:`~cola_gym.envs.episode.Episode` values (one per row) and one left-padded batch of
KV caches, advanced by the same :class:`~cola_gym.envs.stepper.EpisodeStepper` as the
single env. Each step is one world-model call and one decoder call for all rows; a row
whose episode ends is reset in the same step (same-step autoreset: the returned
observation starts the next episode, the last one is in ``info["final_obs"]``) by
prefilling its new prompt and splicing it into the batch.

It behaves exactly like N single envs stepped with the same actions
(``gym.vector.SyncVectorEnv`` with ``AutoresetMode.SAME_STEP``), at batched speed.
:attr:`LatentActionVectorEnv.autoreset_options` lets a caller choose what a row plays next
when it restarts (GRPO streams its groups' episodes through the rows this way).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from cola_gym.envs.env import LatentActionEnv, TaskArg, check_action
from cola_gym.envs.episode import Episode, episode_text
from cola_gym.envs.observation import ObservationLayout
from cola_gym.errors import EpisodeOverError
from cola_gym.model.decoding import DecodingState


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
        task: the task, as for :class:`~cola_gym.envs.env.LatentActionEnv`.
        **env_kwargs: the other arguments of the single env (``model``, ``data_dir``, ...).

    Reset options: one dict for every row, or one per row; all rows are checked before any
    changes, so a bad option anywhere raises and leaves every running episode as it was.

    Attributes:
        autoreset_options: ``None`` (rows restart with no options, as single envs do), or a
            function of the row that gives the reset options of the episode it starts next
            (``None`` for none); it is called in the step where the row's episode ends.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # type: ignore[misc]

    def __init__(
        self, num_envs: int = 1, max_episode_steps: int | None = None, *, task: TaskArg, **env_kwargs: Any
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        self.env = LatentActionEnv(task, **env_kwargs)
        self.stepper = self.env.stepper
        self.task = self.env.task
        self.model = self.env.model
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.single_action_space = self.env.action_space
        self.single_observation_space = self.env.observation_space
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)  # rows of the same layout
        self.render_mode = self.env.render_mode
        self._episodes: list[Episode] = []
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._counts = np.zeros(num_envs, dtype=np.int64)
        self._state: DecodingState | None = None
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self.autoreset_options: Callable[[int], Mapping[str, Any] | None] | None = None

    # ------------------------------------------------------------ Gymnasium vector API
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts N episodes with one batched prefill (all rows or none).

        Args:
            seed: an int s seeds env i with s + i; or one seed per env.
            options: one dict for every env, or one per env.
        """
        seeds = self._seeds(seed)
        if options is None or isinstance(options, Mapping):
            per_env: list[Any] = [options] * self.num_envs
        elif isinstance(options, (list, tuple)):
            per_env = list(options)
        else:
            raise TypeError(
                f"options must be a dict, a list of dicts (one per env) or None, got {type(options).__name__}"
            )
        if len(per_env) != self.num_envs:
            raise ValueError(f"got {len(per_env)} options for {self.num_envs} envs")
        checked = [self.task.check_options(o) for o in per_env]
        rngs = [self._rng(row, s) for row, s in enumerate(seeds)]
        episodes = [
            self.stepper.begin(o, rng, int(n) + 1) for o, rng, n in zip(checked, rngs, self._counts, strict=True)
        ]
        state = self.stepper.prefill([e.prompt_ids for e in episodes])
        self._rngs, self._episodes, self._state = list(rngs), episodes, state
        self._counts += 1
        self._steps[:] = 0
        infos: dict[str, Any] = {}
        for row, episode in enumerate(episodes):
            infos = self._add_info(infos, self.stepper.info(episode), row)
        return self.stepper.observations(state), infos

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
        return np.stack([self.row_action_mask(row) for row in range(self.num_envs)])

    def row_action_mask(self, row: int) -> np.ndarray:
        """``bool[num_actions]``: row ``row``'s allowed actions."""
        return self.stepper.action_mask(self._episodes[row] if self._episodes else None)

    def render(self) -> tuple[str, ...] | None:
        """Each row's prompt and text so far (``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        return tuple(e.prompt + episode_text(e) for e in self._episodes)

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release: the model is shared by the process."""
        self._state = None

    # ------------------------------------------------------------ the batched step
    def step_rows(self, actions: Any) -> list[RowStep]:
        """The step, row by row (used by :meth:`step` and by the SB3 adapter)."""
        if self._state is None:
            raise EpisodeOverError("step() called before reset(); call reset() first.")
        array = np.asarray(actions)
        if array.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions (one per env), got an array of shape {array.shape}")
        codes = [check_action(a, self.stepper.num_actions, self.stepper.action_kind) for a in array]
        result = self.stepper.step(self._episodes, self._state, codes)
        self._state = result.state
        self._episodes = list(result.booking.episodes)
        self._steps += 1
        observations = self.stepper.observations(result.state)
        results: list[RowStep] = []
        ended: list[int] = []
        for row, (episode, outcome) in enumerate(zip(self._episodes, result.booking.outcomes, strict=True)):
            # as gymnasium's TimeLimit: the step limit truncates even a terminating step
            at_limit = bool(self.max_episode_steps and self._steps[row] >= self.max_episode_steps)
            truncated = at_limit or (not outcome.terminated and self.stepper.context_full(episode.positions))
            results.append(RowStep(observations[row], self.stepper.reward(episode, outcome),
                                   outcome.terminated, truncated, self.stepper.info(episode)))  # fmt: skip
            if outcome.terminated or truncated:
                ended.append(row)
        if ended:
            self._autoreset(ended, results)
        return results

    def _autoreset(self, rows: list[int], results: list[RowStep]) -> None:
        source = self.autoreset_options
        checked = [self.task.check_options(None if source is None else source(row)) for row in rows]
        for row, options in zip(rows, checked, strict=True):
            results[row].final_observation, results[row].final_info = results[row].observation, results[row].info
            rng = self._rngs[row]
            assert rng is not None
            self._counts[row] += 1
            self._episodes[row] = self.stepper.begin(options, rng, int(self._counts[row]))
        assert self._state is not None
        fresh = self.stepper.prefill([self._episodes[r].prompt_ids for r in rows])
        self._state = self._state.replace_rows(rows, fresh, overwrite=True)  # the old state is dropped
        self._steps[rows] = 0
        for row, observation in zip(rows, self.stepper.observations(self._state, rows), strict=True):
            results[row].observation = observation
            results[row].info = self.stepper.info(self._episodes[row])

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None or isinstance(seed, (int, np.integer)):
            return [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
        return seeds

    def _rng(self, row: int, seed: int | None) -> np.random.Generator:
        """Row ``row``'s generator after a reset with ``seed`` (a copy: nothing changes until commit)."""
        if seed is not None:
            return seeding.np_random(seed)[0]
        current = self._rngs[row]
        return copy.deepcopy(current) if current is not None else seeding.np_random()[0]

    # ------------------------------------------------------------ what agents read
    @property
    def observation_layout(self) -> ObservationLayout:
        """How each row's observation splits into h_t and the prior (the single env's layout)."""
        return self.env.observation_layout

    @property
    def episodes(self) -> list[Episode]:
        """Each row's current episode value."""
        return list(self._episodes)

    def row_info(self, row: int) -> dict[str, Any]:
        """Row ``row``'s current ``info``."""
        return self.stepper.info(self._episodes[row])

    @property
    def decoding_state(self) -> DecodingState | None:
        """The batch's decoding state (rows in env order), valid until the next ``step``: an
        autoreset writes the new episodes' prompts over the ended rows' caches."""
        return self._state
