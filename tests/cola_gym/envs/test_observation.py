"""The observation layout: one split for numpy and torch, published with the space, equal to what envs write."""

from __future__ import annotations

import copy
import pickle
import warnings
from pathlib import Path

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector.utils import batch_space

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.envs.observation import ObservationBox, ObservationLayout

LAYOUT = ObservationLayout(hidden=3, prior=2)
FLOOR = ObservationLayout.prior_floor


@pytest.fixture
def where(tiny_cola_dir: Path, data_dir: Path) -> dict[str, str]:
    """The model and data every env here is made with."""
    return {"model": str(tiny_cola_dir), "data_dir": str(data_dir)}


@pytest.fixture
def make(where: dict[str, str]):
    def make_env(env_id: str = "CoLA-GSM8K-v0", **kwargs):
        return gym.make(env_id, **where, **kwargs)

    return make_env


@pytest.mark.parametrize("as_array", [np.asarray, torch.as_tensor], ids=["numpy", "torch"])
def test_split_takes_hidden_then_prior_on_the_last_axis(as_array) -> None:
    observations = as_array(np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5))
    hidden, prior = LAYOUT.split(observations)
    assert type(hidden) is type(observations) and type(prior) is type(observations)
    np.testing.assert_array_equal(np.asarray(hidden), np.asarray(observations)[..., :3])
    np.testing.assert_array_equal(np.asarray(prior), np.asarray(observations)[..., 3:])
    one_hidden, one_prior = LAYOUT.split(as_array(np.array([1.0, 2.0, 3.0, -0.5, -1.5])))
    assert np.asarray(one_hidden).tolist() == [1.0, 2.0, 3.0] and np.asarray(one_prior).tolist() == [-0.5, -1.5]
    hidden_only, none = ObservationLayout(hidden=5).split(observations)
    assert none is None and hidden_only.shape == (2, 4, 5)


@pytest.mark.parametrize("shape", [(4,), (2, 6), (5, 1), ()])
def test_split_refuses_observations_of_another_size(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="must have 5 entries on its last axis"):
        LAYOUT.split(np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError, match="must have 5 entries on its last axis"):
        LAYOUT.split(torch.zeros(shape))


@pytest.mark.parametrize(("hidden", "prior"), [(0, 2), (3, -1), (True, 2), (3, 1.5)])
def test_bad_layouts_are_refused(hidden, prior) -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        ObservationLayout(hidden=hidden, prior=prior)


def test_join_clips_the_prior_at_the_floor_and_splits_back() -> None:
    hidden = torch.tensor([[0.5, -0.25, 1.0]])
    log_probs = torch.tensor([[0.0, float("-inf")]])
    observation = LAYOUT.join(hidden, log_probs)
    assert observation.tolist() == [[0.5, -0.25, 1.0, 0.0, FLOOR]] and FLOOR == -1e4
    split_hidden, split_prior = LAYOUT.split(observation)
    assert torch.equal(split_hidden, hidden) and split_prior is not None and torch.isfinite(split_prior).all()
    alone = ObservationLayout(hidden=3).join(hidden)
    assert torch.equal(alone, hidden) and alone.data_ptr() != hidden.data_ptr()  # never the state's own memory
    with pytest.raises(ValueError, match="give the prior exactly when"):
        LAYOUT.join(hidden)
    with pytest.raises(ValueError, match="give the prior exactly when"):
        ObservationLayout(hidden=3).join(hidden, log_probs)
    with pytest.raises(ValueError, match="the prior must have 2 entries"):
        LAYOUT.join(hidden, torch.zeros(1, 3))


def test_the_space_carries_the_layout_through_copies_pickles_and_batches() -> None:
    space = LAYOUT.space(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    assert isinstance(space, ObservationBox) and space.shape == (5,) and space.dtype == np.float32
    np.testing.assert_array_equal(space.high, [1.0, 2.0, 3.0, -FLOOR, -FLOOR])
    np.testing.assert_array_equal(space.low, -space.high)
    for copied in (
        copy.deepcopy(space),
        pickle.loads(pickle.dumps(space)),
        cloudpickle.loads(cloudpickle.dumps(space)),
    ):
        assert isinstance(copied, ObservationBox) and copied.layout == LAYOUT and copied == space
    batched = batch_space(space, 4)
    assert isinstance(batched, ObservationBox) and batched.shape == (4, 5) and ObservationLayout.of(batched) == LAYOUT
    plain = gym.spaces.Box(space.low, space.high, dtype=np.float32)
    assert ObservationLayout.of(plain) == ObservationLayout(hidden=5)  # a plain Box: hidden entries only
    assert space != plain and plain != space  # the same bounds, another layout
    hidden_only = ObservationLayout(hidden=2).space(np.ones(2, dtype=np.float32))
    assert hidden_only == gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    with pytest.raises(TypeError, match="must be a Box"):
        ObservationLayout.of(gym.spaces.Discrete(3))
    with pytest.raises(ValueError, match="cannot hold"):
        ObservationBox(np.zeros(4, dtype=np.float32), np.ones(4, dtype=np.float32), LAYOUT)
    with pytest.raises(ValueError, match="hidden-state bound must have 3 entries"):
        LAYOUT.space(np.ones(4, dtype=np.float32))


@pytest.mark.parametrize(
    ("env_id", "observation", "prior"),
    [
        ("CoLA-GSM8K-v0", "hidden", 0),
        ("CoLA-GSM8K-v0", "hidden+prior", 64),
        ("CoLA-GSM8K-Token-v0", "hidden+prior", 49152),
    ],
)
def test_envs_publish_their_layout_with_their_space(make, where, tiny_cola, env_id: str, observation: str,
                                                    prior: int) -> None:  # fmt: skip
    env = make(env_id, observation=observation)
    expected = ObservationLayout(hidden=tiny_cola.hidden_size, prior=prior)
    assert env.unwrapped.observation_layout == ObservationLayout.of(env.observation_space) == expected
    assert prior in (0, env.action_space.n)  # the prior covers every action: codes, or tokens for a twin
    restored = pickle.loads(pickle.dumps(env))
    assert ObservationLayout.of(restored.observation_space) == expected
    vector = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", observation=observation,
                          **where)  # fmt: skip
    assert ObservationLayout.of(vector.single_observation_space) == vector.unwrapped.observation_layout == expected
    assert ObservationLayout.of(vector.observation_space) == expected and vector.observation_space.shape[0] == 2


def test_the_layout_is_what_the_stepper_writes(make, where) -> None:
    env = make(observation="hidden+prior")
    layout = env.unwrapped.observation_layout
    obs, _ = env.reset(seed=0)
    for step in range(3):
        assert env.observation_space.contains(obs)
        hidden, prior = layout.split(obs)
        state = env.unwrapped.decoding_state
        np.testing.assert_allclose(hidden, state.hidden[0].float().numpy(), atol=1e-6)
        expected = torch.log_softmax(state.policy_logits[0].float(), -1).clamp_min(FLOOR)
        np.testing.assert_allclose(prior, expected.numpy(), atol=1e-5)
        obs, *_ = env.step(step)
    sync = gym.make_vec("CoLA-GSM8K-v0", num_envs=2, vectorization_mode="sync", observation="hidden+prior", **where)
    assert ObservationLayout.of(sync.observation_space) == layout  # Gymnasium's own vector envs keep it


def test_checkers_pass_without_warnings_on_prior_observations(make) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = make(observation="hidden+prior", render_mode="ansi")
        gym_check_env(env.unwrapped)
        sb3_check_env(env, warn=True)
        env.close()
    ours = [w for w in caught if "gymnasium" in w.filename or "stable_baselines3" in w.filename]
    assert not ours, [str(w.message) for w in ours]
