"""Agents on the device: SB3 PPO and GRPO through ``make_sb3_env``, and a batched MCTS search."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

import cola_gym  # noqa: F401 - registers the ids
from cola_agents.algorithms import GRPO
from cola_agents.mcts import CoLASearchModel, MCTSAgent, MCTSConfig, search
from cola_agents.mcts.search import nodes
from cola_agents.sb3 import make_sb3_env
from cola_gym.envs import LatentActionVectorEnv
from cola_gym.model import CoLAModel, DecoderSettings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ENV_ID = "CoLA-Countdown-Easy-v0"
ROWS, LIMIT = 8, 12


def _parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _check_trained(before: list[torch.Tensor], module: torch.nn.Module) -> None:
    after = list(module.parameters())
    assert all(p.device.type == "cuda" for p in after)
    assert all(bool(torch.isfinite(p).all()) for p in after), "non-finite policy weights"
    assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True)), "no weight moved"


def test_ppo_updates_on_the_device(cuda_cola_dir: Path) -> None:
    env = make_sb3_env(ENV_ID, n_envs=ROWS, seed=0, model=str(cuda_cola_dir), device="cuda", max_episode_steps=LIMIT)
    agent = PPO("MlpPolicy", env, n_steps=16, batch_size=64, n_epochs=2, device="cuda", seed=0)
    before = _parameters(agent.policy)
    agent.learn(2 * ROWS * 16)  # two rollouts, two updates of two epochs each
    assert agent._n_updates == 4
    _check_trained(before, agent.policy)
    assert agent.ep_info_buffer and "is_success" in agent.ep_info_buffer[0]
    assert np.isfinite(agent.rollout_buffer.observations).all()


def test_grpo_updates_on_the_device(cuda_cola_dir: Path) -> None:
    """The prior in the observation (policy tracked on the device), the KL term, and alias merging
    (the world model scores all K codes of every step on the device)."""
    env = make_sb3_env(ENV_ID, n_envs=ROWS, seed=0, model=str(cuda_cola_dir), device="cuda", max_episode_steps=LIMIT,
                       observation="hidden+prior")  # fmt: skip
    agent = GRPO("MlpPolicy", env, group_size=4, groups_per_rollout=2, n_epochs=1, batch_size=64,
                 merge_aliases=True, kl_coef=0.01, learning_rate=1e-3, device="cuda", seed=0)  # fmt: skip
    assert agent.policy.use_prior
    before = _parameters(agent.policy)
    agent.learn(2 * ROWS * LIMIT)  # a rollout takes at most ROWS * LIMIT steps: at least two updates
    assert agent._n_updates >= 2
    _check_trained(before, agent.policy)
    assert agent.ep_success_buffer is not None and len(agent.ep_success_buffer) >= 2 * ROWS


def test_mcts_searches_two_roots_on_the_device(cuda_cola_dir: Path, check_state) -> None:
    model = CoLAModel.from_pretrained(str(cuda_cola_dir), settings=DecoderSettings(device="cuda"))
    model.add_q_network(1, seed=0)
    assert model.q_network is not None
    with torch.no_grad():
        model.q_network.out.weight.mul_(20.0)  # Q-values spread enough for some TD checks to pass
    vector = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", model=model,
                          track_policy=True, track_q=True, max_episode_steps=64).unwrapped  # fmt: skip
    assert isinstance(vector, LatentActionVectorEnv)
    obs, _ = vector.reset(seed=0)
    state = vector.decoding_state
    assert state is not None
    check_state(state, "the roots' batch")
    search_model = CoLASearchModel.for_env(vector)
    roots = [search_model.root(vector.episodes[row], state.select([row])) for row in range(2)]
    config = MCTSConfig(num_simulations=8, root_width=4, node_width=2, macro_max_tokens=4, rollout_max_tokens=8,
                        parallel_expansions=2, stop_on_finished_answer=False, seed=0)  # fmt: skip
    results = search(search_model, roots, config)
    assert len(results) == 2
    for result in results:
        assert result.simulations == config.num_simulations and result.tokens > 0
        assert result.actions and all(0 <= a < model.num_actions for a in result.actions)
        assert math.isfinite(result.score)
        for node in nodes(result.root):
            assert np.isfinite(node.view.prior).all() and abs(node.view.prior.sum() - 1.0) < 1e-3
            assert node.view.q_values is not None and np.isfinite(node.view.q_values).all()
            assert math.isfinite(node.value)
            check_state(node.handle.state, f"node {node.path_actions}")

    agent = MCTSAgent(model, config)
    agent.bind(vector)
    actions, _ = agent.predict(obs)
    assert actions.shape == (2,) and agent.stats.searches >= 1
    obs, *_ = vector.step(actions)
    assert np.isfinite(obs).all()
