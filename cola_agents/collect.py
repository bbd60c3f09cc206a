"""Logging CoLA episodes for offline Q-learning: policy samples, or a search tree's answers.

cola-gym collect-episodes --env CoLA-GSM8K-Train-v0 --problems 256 --samples 4 --out runs/episodes.jsonl

A Q-network that ranks independent policy samples need not rank the answers a tree search
compares (greedy completions from branch points, many sharing a prefix); with ``--search``
the episodes are every distinct answer of MCTS trees, each node's path then its rollout,
with the env's reward: data for a verifier of the search's own candidates.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import gymnasium as gym
import torch
from tqdm import tqdm

import cola_gym  # noqa: F401 - registers the ids
from cola_agents.mcts.config import MCTSConfig
from cola_agents.mcts.env_model import CoLASearchModel, EpisodeHandle
from cola_agents.mcts.interface import StateView
from cola_agents.mcts.search import SearchResult, nodes, search
from cola_gym.envs.vector import LatentActionVectorEnv
from cola_gym.training.q_records import episode_record, logged_problems, write_episodes


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
    A batch's random stream starts from ``config.seed`` and its first problem, and the run
    resumes: problems ``out`` already holds are skipped (:func:`pending_problems`), so a
    stopped run, started again, writes what an uninterrupted one would.

    Returns:
        ``{"episodes", "success_rate", "mean_tokens", "skipped_problems"}``.
    """
    config = config or MCTSConfig(leaf_value="oracle")
    todo = pending_problems(out, task_indices)
    episodes, successes, tokens = 0, 0.0, 0
    bar = tqdm(total=len(task_indices) * samples, initial=(len(task_indices) - len(todo)) * samples,
               desc="collecting episodes", unit="episode", disable=not show_progress)  # fmt: skip
    for chunk, search_model, roots in _problem_batches(env_id, todo, batch_problems, env_kwargs):
        generator = torch.Generator().manual_seed(_batch_seed(config.seed, chunk[0]))
        handles = [handle for handle, _ in roots]
        records = []
        for _ in range(samples):
            rollouts = search_model.rollout(handles, config, generator)
            for root, index, rollout in zip(handles, chunk, rollouts, strict=True):
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
        "skipped_problems": len(task_indices) - len(todo),
    }


def collect_search_episodes(
    env_id: str,
    task_indices: Sequence[int],
    out: str | os.PathLike[str],
    config: MCTSConfig,
    searches: int = 1,
    batch_problems: int = 8,
    show_progress: bool = True,
    **env_kwargs: Any,
) -> dict[str, float]:
    """Searches each task instance ``searches`` times (seeds ``config.seed``, ``+1``, ...) and appends
    every distinct answer of each tree (:func:`tree_episodes`) to ``out``.

    Single-turn tasks only. With ``config.leaf_value="q_network"`` the env's model needs a
    Q-network and the trees are the ones MCTS-Q grows (the candidates its verifier must rank).
    Resumes as :func:`collect_episodes` does (a batch's searches are written together).

    Returns:
        ``{"episodes", "success_rate", "mean_tokens", "episodes_per_search", "searches_with_a_right_answer",
        "skipped_problems"}`` (the rates over the searches this call ran).
    """
    if searches < 1:
        raise ValueError(f"searches must be >= 1, got {searches}")
    todo = pending_problems(out, task_indices)
    records_written, successes, tokens, found = 0, 0.0, 0, 0
    bar = tqdm(total=len(task_indices) * searches, initial=(len(task_indices) - len(todo)) * searches,
               desc="searching", unit="search", disable=not show_progress)  # fmt: skip
    track_q = config.leaf_value == "q_network"
    for chunk, search_model, roots in _problem_batches(env_id, todo, batch_problems, env_kwargs, track_q):
        records = []
        for round_ in range(searches):
            results = search(search_model, roots, replace(config, seed=config.seed + round_))
            for index, result in zip(chunk, results, strict=True):
                episodes = tree_episodes(index, result)
                records += episodes
                successes += sum(record["reward"] for record in episodes)
                tokens += sum(len(record["actions"]) for record in episodes)
                found += any(record["reward"] > 0.5 for record in episodes)
            bar.update(len(chunk))
        records_written += write_episodes(out, records)
    bar.close()
    total_searches = len(todo) * searches
    return {
        "episodes": records_written,
        "success_rate": successes / max(records_written, 1),
        "mean_tokens": tokens / max(records_written, 1),
        "episodes_per_search": records_written / max(total_searches, 1),
        "searches_with_a_right_answer": found / max(total_searches, 1),
        "skipped_problems": len(task_indices) - len(todo),
    }


def pending_problems(out: str | os.PathLike[str], task_indices: Sequence[int]) -> list[int]:
    """The task indices ``out`` holds no episode of yet, in order (all of them without ``out``).

    A batch's episodes reach the file in one write (:func:`write_episodes`); a last line
    without its newline (a run killed while writing) is cut off first.
    """
    logged = logged_problems(out)
    return [index for index in task_indices if index not in logged]


def _batch_seed(seed: int, first_problem: int) -> int:
    """The random seed of the batch that starts at ``first_problem``: the same whether a run resumed or not."""
    return seed * 1_000_003 + first_problem


def tree_episodes(problem_index: int, result: SearchResult) -> list[dict[str, Any]]:
    """Every distinct answer of a search tree over a single-turn task, as episode records: each
    node's path from the root, then the rollout that evaluated it, with the env's reward.

    The search must start where the answer starts (no token of the turn written yet). As in
    sampled episodes, ``ids`` hold the tokens the decoder read: an answer's last token, which
    ended it, is written but not read; answers are distinct by those tokens and their reward.

    Raises:
        ValueError: for a multi-turn episode or a search started inside an answer.
    """
    root = result.root.handle
    if not isinstance(root, EpisodeHandle):
        raise TypeError("tree episodes need a search over cola-gym episodes (CoLASearchModel)")
    if root.episode.turn_ids or root.episode.turns:
        raise ValueError("tree episodes are written for searches from the start of a single-turn answer")
    prompt = list(root.episode.prompt_ids)
    records: list[dict[str, Any]] = []
    seen: set[tuple[tuple[int, ...], float]] = set()
    for node in nodes(result.root):
        if node.rollout is None:
            continue
        path, rollout = node.path_tokens, node.rollout
        read = path[:-1] if node.finished else path  # the token that ended the answer is not read
        one_read_per_action = rollout.positions == list(range(len(rollout.actions)))
        if node.handle.episode.positions != len(prompt) + len(read) or not one_read_per_action:
            raise ValueError("tree episodes are written for single-turn tasks (one token read per latent action)")
        ids = read + rollout.tokens
        key = (tuple(ids), rollout.reward)  # answers whose unread last tokens differ may differ in reward
        if key in seen:
            continue
        seen.add(key)
        actions = node.path_actions + rollout.actions
        records.append(episode_record(problem_index, prompt, ids, actions, list(range(len(actions))),
                                      rollout.reward, rollout.finished))  # fmt: skip
    return records


def _problem_batches(
    env_id: str, task_indices: Sequence[int], batch_problems: int, env_kwargs: dict[str, Any], track_q: bool = False
) -> Iterator[tuple[list[int], CoLASearchModel, list[tuple[EpisodeHandle, StateView]]]]:
    """``batch_problems`` task instances at a time: their indices, a search model over a vector env
    reset to them, and each one's search root (the env is closed when the batch is done)."""
    for first in range(0, len(task_indices), batch_problems):
        chunk = list(task_indices[first : first + batch_problems])
        vector = gym.make_vec(env_id, num_envs=len(chunk), vectorization_mode="vector_entry_point", track_policy=True,
                              track_q=track_q, **env_kwargs).unwrapped  # fmt: skip
        if not isinstance(vector, LatentActionVectorEnv):
            raise TypeError(f"{env_id} is not a cola-gym env")
        try:
            vector.reset(options=[{"task_index": index} for index in chunk])
            state = vector.decoding_state
            assert state is not None
            search_model = CoLASearchModel.for_env(vector)
            yield chunk, search_model, [search_model.root(episode, state.select([row]))
                                        for row, episode in enumerate(vector.episodes)]  # fmt: skip
        finally:
            vector.close()
