"""The shared evaluation loop and the prior agent."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from cola_agents import PriorAgent, RandomAgent
from cola_agents.agents import agent_env_kwargs, merge_agent_env_kwargs
from cola_agents.evaluation import evaluate
from cola_gym.envs.observation import ObservationLayout


def test_evaluation_runs_one_episode_per_problem(tiny_cola_dir: Path, data_dir: Path) -> None:
    agent = PriorAgent(num_actions=64)
    kwargs = {"model": str(tiny_cola_dir), "data_dir": str(data_dir), "observation": "hidden+prior",
              "max_episode_steps": 9}  # fmt: skip
    result = evaluate(agent, "CoLA-GSM8K-v0", [5, 1, 7], n_envs=2, show_progress=True, **kwargs)
    assert result.task_indices == [5, 1, 7]
    assert len(result.successes) == 3 and result.tokens == [9, 9, 9]  # nothing finished before the limit
    summary = result.summary()
    assert summary["success_rate"] == 0.0 and summary["episodes"] == 3.0 and summary["tokens_per_s"] > 0
    # the same problem, alone and greedily, gives the same text
    env = gym.make("CoLA-GSM8K-v0", **kwargs)
    obs, _ = env.reset(options={"problem_index": 1})
    agent.bind(env)  # evaluate bound it to its own vector envs
    for _ in range(9):
        action, _ = agent.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert result.infos[1]["answer"] == info["answer"] and result.infos[1]["task_index"] == 1
    assert set(result.infos[1]) == set(info) - {"text"}


def test_prior_agent_reads_the_prior_from_observations() -> None:
    agent = PriorAgent(num_actions=4, top_k=2, seed=0)
    obs = np.array([[0.5, 0.1, np.log(0.1), np.log(0.6), np.log(0.2), np.log(0.1)]] * 3)
    actions, _ = agent.predict(obs, deterministic=True)
    assert actions.tolist() == [1, 1, 1]
    sampled = {int(agent.predict(obs[0], deterministic=False)[0]) for _ in range(50)}
    assert sampled == {1, 2}  # the top 2 codes only
    split_by_layout = PriorAgent(layout=ObservationLayout(hidden=2, prior=4), top_k=2, seed=0)
    assert split_by_layout.predict(obs, deterministic=True)[0].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="observation='hidden\\+prior'"):
        PriorAgent(layout=ObservationLayout(hidden=6)).predict(obs)


def test_evaluation_makes_envs_with_the_arguments_the_agent_needs(tiny_cola_dir: Path, data_dir: Path) -> None:
    kwargs = {"model": str(tiny_cola_dir), "data_dir": str(data_dir), "max_episode_steps": 3}
    prior = PriorAgent(seed=0)
    assert agent_env_kwargs(prior) == {"track_policy": True} and agent_env_kwargs(RandomAgent()) == {}
    result = evaluate(prior, "CoLA-GSM8K-v0", [0, 1], n_envs=2, **kwargs)  # bound: it reads the tracked policy
    assert result.tokens == [3, 3]
    assert merge_agent_env_kwargs(prior, {"track_policy": True, "observation": "hidden"}) == {
        "track_policy": True, "observation": "hidden"}  # fmt: skip
    with pytest.raises(ValueError, match="PriorAgent needs an env made with track_policy=True, but track_policy=False"):
        evaluate(prior, "CoLA-GSM8K-v0", [0], track_policy=False, **kwargs)
