"""Shared evaluation: any agent with SB3's ``predict()`` on fixed held-out problems, batched.

from cola_agents.evaluation import evaluate
result = evaluate(agent, "CoLA-GSM8K-v0", problem_indices=range(64), n_envs=16)
result.accuracy
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import cola_gym  # noqa: F401 - registers the ids


class Predictor(Protocol):
    """What :func:`evaluate` needs of an agent: SB3's ``predict`` signature.

    Agents that plan on the env's decoding state (MCTS, best-of-N) also have ``bind(env)``,
    which :func:`evaluate` calls on every vector env it makes, and ``set_idle_rows(rows)``,
    which it calls with the rows whose episodes are done (so nothing is searched for them).
    """

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]: ...  # fmt: skip


@dataclass
class EvaluationResult:
    """Per-problem outcomes of one evaluation.

    Attributes:
        problem_indices: the problems, in order.
        rewards: each episode's return.
        correct: whether each answer was right.
        tokens: tokens generated per episode.
        answers: the extracted answers.
        seconds: wall time.
    """

    problem_indices: list[int]
    rewards: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        """Share of problems answered correctly."""
        return float(np.mean(self.correct)) if self.correct else 0.0

    def summary(self) -> dict[str, float]:
        """Accuracy, mean return, mean tokens and tokens per second."""
        total_tokens = int(np.sum(self.tokens))
        return {
            "accuracy": self.accuracy,
            "mean_return": float(np.mean(self.rewards)) if self.rewards else 0.0,
            "mean_tokens": float(np.mean(self.tokens)) if self.tokens else 0.0,
            "tokens_per_s": total_tokens / self.seconds if self.seconds else 0.0,
            "problems": float(len(self.problem_indices)),
        }


def evaluate(
    agent: Predictor,
    env_id: str,
    problem_indices: Iterable[int],
    n_envs: int = 8,
    deterministic: bool = True,
    show_progress: bool = False,
    **env_kwargs: Any,
) -> EvaluationResult:
    """Runs one episode per problem with ``agent``, ``n_envs`` problems decoded as one batch.

    Args:
        agent: anything with SB3's ``predict`` (SB3 models, ``cola_agents`` agents).
        env_id: a cola-gym id; its registered step limit applies.
        problem_indices: the held-out problems.
        n_envs: episodes decoded together.
        deterministic: ``predict(..., deterministic=...)``.
        show_progress: a progress bar over the problems.
        **env_kwargs: env arguments (``model``, ``data_dir``, ``observation``, ...).
    """
    indices = [int(i) for i in problem_indices]
    result = EvaluationResult(problem_indices=indices)
    started = time.perf_counter()
    outcomes: dict[int, tuple[float, bool, int, str]] = {}
    bar = tqdm(total=len(indices), desc=f"evaluating {env_id}", unit="problem", disable=not show_progress)
    for first in range(0, len(indices), n_envs):
        chunk = indices[first : first + n_envs]
        vector = gym.make_vec(env_id, num_envs=len(chunk), vectorization_mode="vector_entry_point", **env_kwargs)
        obs, _ = vector.reset(options=[{"problem_index": i} for i in chunk])  # type: ignore[arg-type]
        if hasattr(agent, "bind"):  # planning agents act on the env's decoding state
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
                final = {key: infos["final_info"][key][row] for key in ("is_correct", "num_tokens", "answer")}
                outcomes[chunk[row]] = (float(returns[row]), bool(final["is_correct"]), int(final["num_tokens"]),
                                        str(final["answer"]))  # fmt: skip
                bar.update(1)
            finished |= starts
            if hasattr(agent, "set_idle_rows"):  # planners: no search for episodes that no longer count
                agent.set_idle_rows(np.flatnonzero(finished))
        vector.close()
    bar.close()
    for index in indices:
        reward, correct, tokens, answer = outcomes[index]
        result.rewards.append(reward)
        result.correct.append(correct)
        result.tokens.append(tokens)
        result.answers.append(answer)
    result.seconds = time.perf_counter() - started
    return result
