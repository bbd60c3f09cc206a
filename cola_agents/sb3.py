"""Stable-Baselines3 glue: a ``VecEnv`` over the batched CoLA vector env.

SB3's own vectorisation (``SubprocVecEnv``) would load one model per process, and
``DummyVecEnv`` would decode one env at a time. :class:`CoLAVecEnv` instead hands SB3 the
batched vector env: one decoder step for all N envs per ``env.step``.

    from stable_baselines3 import PPO
    from cola_agents.sb3 import make_sb3_env

    env = make_sb3_env("CoLA-GSM8K-Train-v0", n_envs=16, seed=0)
    PPO("MlpPolicy", env).learn(10_000)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

import cola_gym  # noqa: F401 - registers the ids
from cola_agents.agents import merge_agent_env_kwargs
from cola_gym.envs.vector import LatentActionVectorEnv


class CoLAVecEnv(VecEnv):
    """SB3 ``VecEnv`` API over a :class:`~cola_gym.envs.vector.LatentActionVectorEnv`.

    Finished episodes restart in the same step, as in SB3's own vec envs:
    ``info["terminal_observation"]`` holds the last observation and
    ``info["TimeLimit.truncated"]`` marks step-limit ends. ``env_method("action_masks")``
    serves MaskablePPO.
    """

    def __init__(self, vector_env: LatentActionVectorEnv) -> None:
        self.vector_env = vector_env
        super().__init__(vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        """Starts every env (seeds and options from :meth:`seed` / :meth:`set_options`, used once)."""
        observations, _ = self.vector_env.reset(seed=self._seeds, options=self._options)
        self.reset_infos = [self.vector_env.row_info(row) for row in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        """Remembers the actions for :meth:`step_wait`."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """One batched step; done rows carry ``terminal_observation`` and are already reset."""
        assert self._actions is not None, "step_async() first"
        rows = self.vector_env.step_rows(self._actions)
        infos = []
        for index, row in enumerate(rows):
            if row.final_observation is not None:
                info = dict(row.final_info or {})
                info["terminal_observation"] = row.final_observation
                info["TimeLimit.truncated"] = row.truncated and not row.terminated
                self.reset_infos[index] = row.info
            else:
                info = dict(row.info)
                info["TimeLimit.truncated"] = False
            infos.append(info)
        observations = np.stack([r.observation for r in rows])
        rewards = np.array([r.reward for r in rows], dtype=np.float32)
        dones = np.array([r.terminated or r.truncated for r in rows], dtype=np.bool_)
        return observations, rewards, dones, infos

    def close(self) -> None:
        """Releases the batch (the model stays, shared by the process)."""
        self.vector_env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """``attr_name`` of the env (the same for every row: rows share one env's settings)."""
        return [getattr(self.vector_env.env, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Rows share one env's settings: a value must be the same for all of them."""
        if list(self._indices(indices)) != list(range(self.num_envs)):
            raise ValueError("the rows of a CoLA vector env share their settings; set an attribute for all of them")
        setattr(self.vector_env.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:  # fmt: skip
        """``"action_masks"`` (MaskablePPO): each selected row's mask; other methods run on the env."""
        if method_name == "action_masks":
            return [self.vector_env.row_action_mask(i) for i in self._indices(indices)]
        method = getattr(self.vector_env.env, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """The task envs are never wrapped (the vector env does the step limit itself)."""
        return [False for _ in self._indices(indices)]

    def action_masks(self) -> np.ndarray:
        """``bool[N, num_actions]``."""
        return self.vector_env.action_masks()

    def _indices(self, indices: VecEnvIndices) -> Iterable[int]:
        return self._get_indices(indices)


def make_sb3_env(
    env_id: str,
    n_envs: int = 1,
    seed: int | None = None,
    monitor: bool = True,
    info_keywords: Sequence[str] = ("is_success",),
    agent: Any = None,
    **env_kwargs: Any,
) -> VecEnv:
    """A batched SB3 ``VecEnv`` of ``n_envs`` copies of ``env_id`` (one shared model).

    Args:
        env_id: a cola-gym id (``"CoLA-GSM8K-Train-v0"``, ``"CoLA-GSM8K-Token-v0"``, ...).
        n_envs: number of parallel episodes, decoded as one batch.
        seed: seeds env i with ``seed + i`` at the first reset.
        monitor: wrap in SB3's ``VecMonitor`` (episode return, length and ``info_keywords``
            in the logs and ``ep_info_buffer``).
        info_keywords: info keys recorded per finished episode by the monitor.
        agent: the agent that will act in it, if any: the env arguments it needs
            (:func:`~cola_agents.agents.agent_env_kwargs`) are added.
        **env_kwargs: arguments of the env (``model``, ``data_dir``, ``observation``, ...).

    Raises:
        ValueError: an env argument contradicts one the agent needs.
    """
    env_kwargs = merge_agent_env_kwargs(agent, env_kwargs)
    vector = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point", **env_kwargs)
    env: VecEnv = CoLAVecEnv(vector.unwrapped)  # type: ignore[arg-type]
    if monitor:
        env = VecMonitor(env, info_keywords=tuple(info_keywords))
    if seed is not None:
        env.seed(seed)
    return env
