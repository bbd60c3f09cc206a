"""Stock SB3 / sb3-contrib algorithms on the batched CoLA VecEnv, and the prior policies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import ARS, QRDQN, TRPO, MaskablePPO, RecurrentPPO
from stable_baselines3 import A2C, DQN, PPO

from cola_agents.policies import CoLAMaskablePriorPolicy, CoLAPriorPolicy, CoLARecurrentPriorPolicy
from cola_agents.sb3 import CoLAVecEnv
from cola_gym.envs import LatentActionVectorEnv
from cola_gym.envs.observation import ObservationLayout
from cola_gym.model.generation import greedy_policy, rollout
from cola_gym.tasks.math.task import MathTask

ALGORITHMS = {
    "PPO": lambda env: PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=2, seed=0),
    "A2C": lambda env: A2C("MlpPolicy", env, n_steps=8, seed=0),
    "DQN": lambda env: DQN("MlpPolicy", env, learning_starts=32, buffer_size=1000, train_freq=4, seed=0),
    "MaskablePPO": lambda env: MaskablePPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=2, seed=0),
    "RecurrentPPO": lambda env: RecurrentPPO("MlpLstmPolicy", env, n_steps=32, batch_size=32, n_epochs=2, seed=0),
    "QR-DQN": lambda env: QRDQN("MlpPolicy", env, learning_starts=32, buffer_size=1000, train_freq=4, seed=0),
    "TRPO": lambda env: TRPO("MlpPolicy", env, n_steps=32, batch_size=32, seed=0),
    "ARS": lambda env: ARS("LinearPolicy", env, n_delta=2, n_top=1, seed=0),
}


def _parameters(model: Any) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.policy.parameters()]


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_algorithm_trains_unmodified(name: str, vec_env) -> None:
    env = vec_env(prior_kl_coef=0.1)  # a dense, action-dependent reward: every algorithm gets a signal
    model = ALGORITHMS[name](env)
    before = _parameters(model)
    model.learn(256)
    after = _parameters(model)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)), f"{name} did not update"
    assert len(model.ep_info_buffer) > 0  # finished episodes reached the logs
    if name != "ARS":  # ARS books its own evaluation episodes
        assert "is_success" in model.ep_info_buffer[0]  # the task contract, through VecMonitor


@pytest.mark.parametrize(
    ("algorithm", "env_id"),
    [(algorithm, env_id) for algorithm in ("PPO", "GRPO") for env_id in ("CoLA-GSM8K-v0", "CoLA-GSM8K-Token-v0")],
)
def test_rl_trains_the_agent_only_the_language_model_stays_bit_identical(algorithm, env_id, vec_env, tiny_cola) -> None:
    from cola_agents.algorithms import GRPO

    before = {name: tensor.clone() for name, tensor in tiny_cola.state_dict().items()}
    env = vec_env(env_id, n_envs=4, **({} if "Token" in env_id else {"prior_kl_coef": 0.1}))
    if algorithm == "PPO":
        agent = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=2, seed=0)
    else:
        # the entropy bonus moves the policy even where no group's rewards differ
        agent = GRPO("MlpPolicy", env, group_size=4, n_epochs=2, batch_size=16, ent_coef=0.01, seed=0)
    policy_before = _parameters(agent)
    agent.learn(128)
    assert any(not torch.equal(a, b) for a, b in zip(policy_before, _parameters(agent), strict=True))
    after = tiny_cola.state_dict()
    assert after.keys() == before.keys()
    changed = [name for name, tensor in before.items() if not torch.equal(tensor, after[name])]
    assert not changed, f"{algorithm} on {env_id} changed the CoLA model: {changed[:5]}"


def test_token_twin_trains_with_the_vocabulary_as_action_space(vec_env) -> None:
    env = vec_env("CoLA-GSM8K-Token-v0", n_envs=2)
    assert env.action_space.n == 49152
    PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0).learn(32)


def test_save_load_predict_round_trip(vec_env, tmp_path: Path) -> None:
    env = vec_env()
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0)
    model.learn(64)
    obs = env.reset()
    expected, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "ppo")
    loaded = PPO.load(tmp_path / "ppo", env=env)
    actual, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(expected, actual)


class EvenCodesMathTask(MathTask):
    """Only even latent codes are allowed."""

    def action_mask(self, state: Any, num_actions: int) -> np.ndarray:
        masks = np.zeros(num_actions, dtype=bool)
        masks[::2] = True
        return masks


def test_maskable_ppo_respects_action_masks(tiny_cola_dir: Path, data_dir: Path) -> None:
    dataset = gym.spec("CoLA-GSM8K-v0").kwargs["dataset"]
    task = EvenCodesMathTask(dataset=dataset, data_dir=str(data_dir))
    vector = LatentActionVectorEnv(num_envs=4, max_episode_steps=12, task=task, model=str(tiny_cola_dir))
    seen: list[int] = []
    step = vector.stepper.step

    def record(episodes, state, actions):  # every code the env receives
        seen.extend(int(a) for a in actions)
        return step(episodes, state, actions)

    vector.stepper.step = record  # type: ignore[method-assign]
    MaskablePPO("MlpPolicy", CoLAVecEnv(vector), n_steps=32, batch_size=32, n_epochs=1, seed=0).learn(256)
    assert len(seen) >= 256
    assert all(code % 2 == 0 for code in seen)


@pytest.mark.parametrize(
    ("algorithm", "policy"),
    [(PPO, CoLAPriorPolicy), (MaskablePPO, CoLAMaskablePriorPolicy), (RecurrentPPO, CoLARecurrentPriorPolicy)],
)
def test_prior_policies_start_as_the_bc_policy(algorithm, policy, vec_env, tiny_cola) -> None:
    env = vec_env(n_envs=2, observation="hidden+prior")
    agent = algorithm(policy, env, n_steps=16, batch_size=32, seed=0)
    base = env.unwrapped.vector_env
    obs = env.reset()
    expected = rollout(tiny_cola, base.decoding_state, 10, greedy_policy)  # the BC policy's greedy completion
    tokens = []
    state, starts = None, np.ones(2, dtype=bool)
    for _ in range(10):
        actions, state = agent.predict(obs, state=state, episode_start=starts, deterministic=True)
        starts = np.zeros(2, dtype=bool)
        tokens.append(tiny_cola.next_tokens(base.decoding_state, torch.as_tensor(actions)))
        obs, _, _, _ = env.step(actions)
    assert torch.equal(torch.stack(tokens, dim=1), expected)
    agent.learn(32)  # and it trains


def test_prior_policies_need_the_prior_in_the_observation(vec_env) -> None:
    env = vec_env(n_envs=2)
    with pytest.raises(ValueError, match="make the env with observation='hidden\\+prior'"):
        PPO(CoLAPriorPolicy, env)
    wide = gym.spaces.Box(-1e4, 1e4, shape=(env.observation_space.shape[0] + 64,), dtype=np.float32)
    with pytest.raises(ValueError, match="hidden\\+prior"):  # a plain Box publishes no prior, however wide
        CoLAPriorPolicy(wide, env.action_space, lambda _: 1e-3)


def test_the_layout_survives_save_and_load(vec_env, tmp_path: Path) -> None:
    env = vec_env(n_envs=2, observation="hidden+prior")
    layout = env.unwrapped.vector_env.observation_layout
    model = PPO(CoLAPriorPolicy, env, n_steps=16, batch_size=32, n_epochs=1, seed=0)
    assert model.policy.pi_features_extractor.layout == layout and layout.prior == env.action_space.n
    model.save(tmp_path / "ppo")
    loaded = PPO.load(tmp_path / "ppo")  # no env: the policy is rebuilt from the saved space alone
    assert ObservationLayout.of(loaded.observation_space) == layout
    assert loaded.policy.pi_features_extractor.layout == layout
    obs = env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_ppo_learns_the_rewarded_latent_action(speller, first_token_task) -> None:
    model, spell = speller
    actions = spell(" apple banana cherry date elder fig grape")
    task = first_token_task(" grape")
    env = CoLAVecEnv(LatentActionVectorEnv(num_envs=8, max_episode_steps=2, task=task, model=model))
    agent = PPO("MlpPolicy", env, n_steps=8, batch_size=64, n_epochs=4, learning_rate=3e-3, ent_coef=0.0, seed=0)
    agent.learn(3000)
    obs = env.reset()
    chosen, _ = agent.predict(obs, deterministic=True)
    assert (chosen == actions[-1]).all(), (chosen, actions[-1])
