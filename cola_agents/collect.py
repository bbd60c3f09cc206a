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
from cola_gym.envs.vector import LatentActionVectorEnv
from cola_gym.training.q_records import episode_record, write_episodes


def collect_episodes(
    env_id: str,
    task_indices: Sequence[int],
    out: str | os.PathLike[str],
    samples: int = 4,
    batch_problems: int = 8,
    config: MCTSConfig | None = None,
    show_progress: bool = True,
    **env_kwargs: Any,
) -> dict[str, float]:
    """Samples ``samples`` episodes per task instance with the CoLA policy and appends them to ``out``.

    Problems are decoded ``batch_problems`` at a time, all samples of a round in one batch.
    Sampling follows ``config`` (the release's top-k 40 at temperature 1 by default; the
    token limit is ``config.rollout_max_tokens``); rewards are the env's (1 right, 0 wrong).

    Returns:
        ``{"episodes", "success_rate", "mean_tokens"}``.
    """
    config = config or MCTSConfig(leaf_value="oracle")
    generator = torch.Generator().manual_seed(config.seed)
    episodes, successes, tokens = 0, 0.0, 0
    bar = tqdm(total=len(task_indices) * samples, desc="collecting episodes", unit="episode",
               disable=not show_progress)  # fmt: skip
    for first in range(0, len(task_indices), batch_problems):
        chunk = list(task_indices[first : first + batch_problems])
        vector = _vector_env(env_id, len(chunk), env_kwargs)
        vector.reset(options=[{"task_index": index} for index in chunk])
        state = vector.decoding_state
        assert state is not None
        search_model = CoLASearchModel.for_env(vector)
        roots = [search_model.root(episode, state.select([row]))[0] for row, episode in enumerate(vector.episodes)]
        records = []
        for _ in range(samples):
            rollouts = search_model.rollout(roots, config, generator)
            for root, index, rollout in zip(roots, chunk, rollouts, strict=True):
                records.append(episode_record(index, list(root.episode.prompt_ids), rollout.tokens, rollout.actions,
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


def _vector_env(env_id: str, num_envs: int, env_kwargs: dict[str, Any]) -> LatentActionVectorEnv:
    vector = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", track_policy=True,
                          **env_kwargs).unwrapped  # fmt: skip
    if not isinstance(vector, LatentActionVectorEnv):
        raise TypeError(f"{env_id} is not a cola-gym env")
    return vector
