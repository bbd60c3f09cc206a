"""Fixtures of the agent tests: batched SB3 envs of the tiny model, a one-token bandit on it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cola_agents.sb3 import make_sb3_env
from cola_gym.envs import Task, TaskStart, TurnOutcome


class FirstTokenTask(Task[None]):
    """A one-token bandit on the real model: reward 1 when the first token is the target.

    ``prompts`` instances differ only in their prompt (``task_index`` picks one).
    """

    def __init__(self, target: str, prompts: int = 1) -> None:
        self.target = target
        self.prompts = prompts

    @property
    def num_tasks(self) -> int:
        return self.prompts

    def begin(self, options: Mapping[str, Any], rng: Any) -> TaskStart[None]:
        index = options.get("task_index", 0)
        return TaskStart(None, ({"role": "user", "content": f"Say the magic word number {index}."},))

    def turn_complete(self, state: None, turn_text: str) -> bool:
        return True

    def end_turn(self, state: None, turn_text: str) -> TurnOutcome[None]:
        return TurnOutcome(None, reward=float(turn_text == self.target))


@pytest.fixture
def first_token_task() -> type[FirstTokenTask]:
    """The bandit task class: ``first_token_task(" grape")``."""
    return FirstTokenTask


@pytest.fixture
def vec_env(tiny_cola_dir: Path, data_dir: Path):
    """``vec_env(env_id, n_envs, max_episode_steps=12, **env_kwargs)``: a batched SB3 env of the tiny model."""

    def make(env_id: str = "CoLA-GSM8K-v0", n_envs: int = 4, max_episode_steps: int = 12, **kwargs: Any):
        return make_sb3_env(env_id, n_envs=n_envs, seed=0, model=str(tiny_cola_dir), data_dir=str(data_dir),
                            max_episode_steps=max_episode_steps, **kwargs)  # fmt: skip

    return make
