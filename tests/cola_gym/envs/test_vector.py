"""The batched vector env equals N single envs stepped with the same actions."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.envs import LatentActionEnv, LatentActionVectorEnv
from cola_gym.errors import InvalidActionError


def _make_vec(num_envs: int, env_id: str = "CoLA-GSM8K-v0", **kwargs) -> LatentActionVectorEnv:
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs).unwrapped


def _compare(ours: tuple, reference: tuple) -> None:
    obs, rewards, terminated, truncated, infos = ours
    ref_obs, ref_rewards, ref_terminated, ref_truncated, ref_infos = reference
    np.testing.assert_allclose(obs, ref_obs, atol=2e-4)
    np.testing.assert_array_equal(rewards, ref_rewards)
    np.testing.assert_array_equal(terminated, ref_terminated)
    np.testing.assert_array_equal(truncated, ref_truncated)
    for key in ("text", "answer", "is_correct", "problem_index", "num_tokens", "is_success", "task_index"):
        np.testing.assert_array_equal(infos[key], ref_infos[key], err_msg=key)
    assert set(infos) == set(ref_infos)
    if "final_obs" in ref_infos:
        for row in np.flatnonzero(ref_infos["_final_obs"]):
            np.testing.assert_allclose(infos["final_obs"][row], ref_infos["final_obs"][row], atol=2e-4)
            assert infos["final_info"]["text"][row] == ref_infos["final_info"]["text"][row]


@pytest.mark.parametrize("env_id", ["CoLA-GSM8K-v0", "CoLA-GSM8K-Token-v0"])
def test_vector_env_equals_single_envs(env_id: str, tiny_cola_dir: Path, data_dir: Path) -> None:
    kwargs = {"model": str(tiny_cola_dir), "data_dir": str(data_dir), "max_episode_steps": 7}
    vector = gym.make_vec(env_id, num_envs=4, vectorization_mode="vector_entry_point", **kwargs)
    assert isinstance(vector.unwrapped, LatentActionVectorEnv)
    reference = SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(4)],
                              autoreset_mode=AutoresetMode.SAME_STEP)  # fmt: skip
    _obs, infos = vector.reset(seed=3)
    ref_obs, ref_infos = reference.reset(seed=3)
    np.testing.assert_allclose(_obs, ref_obs, atol=2e-4)
    np.testing.assert_array_equal(infos["problem_index"], ref_infos["problem_index"])
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(20):  # three episodes per row: resets with prompts of other lengths
        actions = rng.integers(0, vector.single_action_space.n, size=4)
        ours, theirs = vector.step(actions), reference.step(actions)
        _compare(ours, theirs)
        ended += int(np.sum(ours[2] | ours[3]))
    assert ended >= 8
    state = vector.unwrapped.decoding_state
    assert state.batch_size == 4 and not (state.attention_mask == 0).all(dim=0).any()  # compacted


def test_episodes_of_different_lengths_and_multi_token_feeds(speller, data_dir: Path) -> None:
    """Rows end at different steps (an answer, the limit); a finished row gets padding only."""
    model, spell = speller
    actions_a = spell(r"so \boxed{18}")
    vector = _make_vec(2, max_episode_steps=12, model=model, data_dir=str(data_dir))
    singles = [gym.make("CoLA-GSM8K-v0", model=model, data_dir=str(data_dir), max_episode_steps=12) for _ in range(2)]
    vector.reset(seed=0, options={"problem_index": 0})
    for env in singles:
        env.reset(options={"problem_index": 0})
    for step in range(12):
        row_actions = [actions_a[step] if step < len(actions_a) else 0, 1]
        rows = vector.step_rows(row_actions)
        for row, env in enumerate(singles):
            obs, reward, terminated, truncated, _ = env.step(row_actions[row])
            assert (rows[row].reward, rows[row].terminated, rows[row].truncated) == (reward, terminated, truncated)
            expected_obs = obs if not (terminated or truncated) else rows[row].final_observation
            np.testing.assert_allclose(expected_obs, obs, atol=2e-4)
            if terminated or truncated:
                env.reset()
        if step == len(actions_a) - 1:
            assert rows[0].terminated and rows[0].reward == 1.0 and rows[0].final_info["is_correct"]


def test_bad_actions_raise_before_anything_changes(tiny_cola_dir: Path, data_dir: Path) -> None:
    vector = _make_vec(3, model=str(tiny_cola_dir), data_dir=str(data_dir))
    vector.reset(seed=0)
    before = vector.decoding_state
    with pytest.raises(InvalidActionError):
        vector.step([1, 64, 2])
    with pytest.raises(ValueError, match="expected 3 actions"):
        vector.step([1, 2])
    assert vector.decoding_state is before
    vector.step([1, 2, 3])


def test_batched_prior_observations(tiny_cola_dir: Path, data_dir: Path) -> None:
    vector = _make_vec(2, model=str(tiny_cola_dir), data_dir=str(data_dir), observation="hidden+prior")
    obs, _ = vector.reset(seed=0)
    single = LatentActionEnv(vector.task, model=str(tiny_cola_dir), observation="hidden+prior")
    single_obs, _ = single.reset(seed=0)
    assert obs.shape == (2, 64 + 64)
    np.testing.assert_allclose(obs[0], single_obs, atol=2e-4)
    _, prior = vector.observation_layout.split(obs[0])
    assert prior is not None
    log_probs = torch.from_numpy(prior)
    assert torch.allclose(log_probs.exp().sum(), torch.tensor(1.0), atol=1e-4)
