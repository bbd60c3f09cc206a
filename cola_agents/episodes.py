"""Logging CoLA episodes for offline Q-learning: best-of-N policy samples with their actions.

cola-gym collect-episodes --env CoLA-GSM8K-Train-v0 --problems 256 --samples 4 --out runs/episodes.jsonl
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
from tqdm import tqdm

import cola_gym  # noqa: F401 - registers the ids
from cola_agents.mcts.config import MCTSConfig
from cola_agents.mcts.env_model import CoLASearchModel
from cola_gym.envs.base import LatentActionEnv
from cola_gym.training.episodes import episode_record, write_episodes


def collect_episodes(
    env_id: str,
    problem_indices: Sequence[int],
    out: str | os.PathLike[str],
    samples: int = 4,
    batch_problems: int = 8,
    config: MCTSConfig | None = None,
    show_progress: bool = True,
    **env_kwargs: Any,
) -> dict[str, float]:
    """Samples ``samples`` episodes per problem with the CoLA policy and appends them to ``out``.

    Problems are decoded ``batch_problems`` at a time, all samples of a round in one batch.
    Sampling follows ``config`` (the release's top-k 40 at temperature 1 by default; the
    token limit is ``config.rollout_max_tokens``); rewards are the env's (1 right, 0 wrong).

    Returns:
        ``{"episodes", "success_rate", "mean_tokens"}``.
    """
    config = config or MCTSConfig(leaf_value="oracle")
    generator = torch.Generator().manual_seed(config.seed)
    episodes, successes, tokens = 0, 0.0, 0
    bar = tqdm(total=len(problem_indices) * samples, desc="collecting episodes", unit="episode",
               disable=not show_progress)  # fmt: skip
    for first in range(0, len(problem_indices), batch_problems):
        chunk = list(problem_indices[first : first + batch_problems])
        envs = [_task_env(env_id, env_kwargs) for _ in chunk]
        for env, index in zip(envs, chunk, strict=True):
            env.reset(options={"problem_index": index})
        search_model = CoLASearchModel(envs[0].model)
        roots = [search_model.root(env)[0] for env in envs]
        records = []
        for _ in range(samples):
            for env, index, rollout in zip(envs, chunk, search_model.rollout(roots, config, generator), strict=True):
                records.append(episode_record(index, env.prompt_ids, rollout.tokens, rollout.actions,
                                              rollout.positions, rollout.reward, rollout.finished))  # fmt: skip
                successes += rollout.reward
                tokens += len(rollout.actions)
            bar.update(len(chunk))
        episodes += write_episodes(out, records)
    bar.close()
    return {
        "episodes": episodes,
        "success_rate": successes / max(episodes, 1),
        "mean_tokens": tokens / max(episodes, 1),
    }


def _task_env(env_id: str, env_kwargs: dict[str, Any]) -> LatentActionEnv:
    env = gym.make(env_id, track_policy=True, **env_kwargs).unwrapped
    if not isinstance(env, LatentActionEnv):
        raise TypeError(f"{env_id} is not a cola-gym env")
    return env
