"""Shared evaluation: any agent with SB3's ``predict()`` on fixed held-out task instances, batched.

from cola_agents.evaluation import evaluate
result = evaluate(agent, "CoLA-GSM8K-v0", task_indices=range(64), n_envs=16)
result.success_rate

It reads only the task contract: the ``task_index`` reset option, ``info["is_success"]``,
``info["num_tokens"]`` and the task's own info keys (kept per episode in ``infos``). The env
arguments an agent needs (its ``env_kwargs()``) are merged in here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import cola_gym  # noqa: F401 - registers the ids
from cola_agents.agents import Agent, BoundAgent, PlanningAgent, merge_agent_env_kwargs


@dataclass
class EvaluationResult:
    """Per-instance outcomes of one evaluation.

    Attributes:
        task_indices: the task instances, in order.
        rewards: each episode's return.
        successes: each episode's ``info["is_success"]``.
        tokens: tokens generated per episode.
        infos: each episode's last ``info`` without its text (the task's own keys).
        texts: each episode's text (only when ``evaluate(..., keep_text=True)``).
        seconds: wall time.
    """

    task_indices: list[int]
    rewards: list[float] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def success_rate(self) -> float:
        """Share of episodes that succeeded (for math: answered correctly)."""
        return float(np.mean(self.successes)) if self.successes else 0.0

    def summary(self) -> dict[str, float]:
        """Success rate (also as ``accuracy``), mean return, mean tokens and tokens per second;
        for games of commands (household), also ``commands_per_game`` and
        ``invalid_command_rate`` (commands the room answered ``Nothing happens.``)."""
        total_tokens = int(np.sum(self.tokens))
        summary = {
            "success_rate": self.success_rate,
            "accuracy": self.success_rate,
            "mean_return": float(np.mean(self.rewards)) if self.rewards else 0.0,
            "mean_tokens": float(np.mean(self.tokens)) if self.tokens else 0.0,
            "tokens_per_s": total_tokens / self.seconds if self.seconds else 0.0,
            "episodes": float(len(self.task_indices)),
        }
        if self.infos and all("turns" in i and "invalid_commands" in i for i in self.infos):
            commands = sum(int(i["turns"]) for i in self.infos)
            summary["commands_per_game"] = commands / len(self.infos)
            summary["invalid_command_rate"] = sum(int(i["invalid_commands"]) for i in self.infos) / max(commands, 1)
        return summary


def evaluate(
    agent: Agent,
    env_id: str,
    task_indices: Iterable[int],
    n_envs: int = 8,
    deterministic: bool = True,
    show_progress: bool = False,
    keep_text: bool = False,
    **env_kwargs: Any,
) -> EvaluationResult:
    """Runs one episode per task instance with ``agent``, ``n_envs`` of them decoded as one batch.

    Args:
        agent: an :class:`~cola_agents.agents.Agent` (SB3 models, ``cola_agents`` agents);
            a :class:`~cola_agents.agents.BoundAgent` is bound to every vector env made here.
        env_id: a cola-gym id; its registered step limit applies.
        task_indices: the held-out instances (``reset(options={"task_index": i})``).
        n_envs: episodes decoded together.
        deterministic: ``predict(..., deterministic=...)``.
        show_progress: a progress bar over the episodes.
        keep_text: keep each episode's text in :attr:`EvaluationResult.texts`.
        **env_kwargs: env arguments (``model``, ``data_dir``, ``observation``, ...); the
            agent's own (:func:`~cola_agents.agents.agent_env_kwargs`) are added.

    Raises:
        TypeError: ``agent`` has no SB3 ``predict``.
        ValueError: an env argument contradicts one the agent needs.
    """
    if not isinstance(agent, Agent):
        raise TypeError(f"agent must have SB3's predict(observation, state, episode_start, deterministic); "
                        f"got {type(agent).__name__}")  # fmt: skip
    env_kwargs = merge_agent_env_kwargs(agent, env_kwargs)
    indices = [int(i) for i in task_indices]
    result = EvaluationResult(task_indices=indices)
    started = time.perf_counter()
    outcomes: dict[int, tuple[float, dict[str, Any], str]] = {}
    bar = tqdm(total=len(indices), desc=f"evaluating {env_id}", unit="episode", disable=not show_progress)
    for first in range(0, len(indices), n_envs):
        chunk = indices[first : first + n_envs]
        vector = gym.make_vec(env_id, num_envs=len(chunk), vectorization_mode="vector_entry_point", **env_kwargs)
        obs, _ = vector.reset(options=[{"task_index": i} for i in chunk])  # type: ignore[arg-type]
        if isinstance(agent, BoundAgent):
            agent.bind(vector)
        returns = np.zeros(len(chunk))
        finished = np.zeros(len(chunk), dtype=bool)
        state, starts = None, np.ones(len(chunk), dtype=bool)
        while not finished.all():
            actions, state = agent.predict(obs, state=state, episode_start=starts, deterministic=deterministic)
            obs, rewards, terminated, truncated, infos = vector.step(actions)
            starts = terminated | truncated
            returns += np.where(finished, 0.0, rewards)
            for row in np.flatnonzero(starts & ~finished):
                final = {key: _item(values[row]) for key, values in infos["final_info"].items()
                         if not key.startswith("_") and key != "text"}  # fmt: skip
                text = str(infos["final_info"]["text"][row]) if keep_text else ""
                outcomes[chunk[row]] = (float(returns[row]), final, text)
                bar.update(1)
            finished |= starts
            if isinstance(agent, PlanningAgent):  # no search for episodes that no longer count
                agent.set_idle_rows(np.flatnonzero(finished))
        vector.close()
    bar.close()
    for index in indices:
        reward, final, text = outcomes[index]
        if keep_text:
            result.texts.append(text)
        result.rewards.append(reward)
        result.successes.append(bool(final["is_success"]))
        result.tokens.append(int(final["num_tokens"]))
        result.infos.append(final)
    result.seconds = time.perf_counter() - started
    return result


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
