"""Reset faults a hostile user found on the math ids: bad options change nothing, anywhere."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

import cola_gym  # noqa: F401 - registers the ids


@pytest.fixture
def kwargs(tiny_cola_dir: Path, data_dir: Path) -> dict:
    return {"model": str(tiny_cola_dir), "data_dir": str(data_dir), "max_episode_steps": 6}


def _vector(kwargs: dict, num_envs: int = 3):
    return gym.make_vec("CoLA-GSM8K-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def test_one_bad_row_leaves_every_row_as_it_was(kwargs: dict) -> None:
    vector, twin = _vector(kwargs), _vector(kwargs)
    for env in (vector, twin):
        env.reset(seed=0, options=[{"problem_index": 1}, {"problem_index": 2}, {"problem_index": 3}])
        env.step(np.array([5, 6, 7]))
    with pytest.raises(ValueError, match=r"problem_index|task_index"):
        vector.reset(options=[{"problem_index": 4}, {"problem_index": 10**6}, {"problem_index": 5}])
    for _ in range(8):  # the running episodes, their problems and grading go on untouched
        actions = np.array([1, 2, 3])
        assert data_equivalence(vector.step(actions), twin.step(actions))


def test_a_failed_single_reset_keeps_the_running_episode(kwargs: dict) -> None:
    env, twin = gym.make("CoLA-GSM8K-v0", **kwargs), gym.make("CoLA-GSM8K-v0", **kwargs)
    for each in (env, twin):
        each.reset(seed=0, options={"problem_index": 3})
        each.step(4)
    with pytest.raises(ValueError, match=r"problem_index|task_index"):
        env.reset(options={"problem_index": -5})
    for action in (1, 2, 3):
        assert data_equivalence(env.step(action), twin.step(action))


def test_numpy_integer_indices_are_accepted(kwargs: dict) -> None:
    _, info = gym.make("CoLA-GSM8K-v0", **kwargs).reset(options={"problem_index": np.int64(7)})
    assert info["problem_index"] == 7
    _, infos = _vector(kwargs, 2).reset(options=[{"problem_index": np.int32(2)}, {"problem_index": np.uint16(9)}])
    assert infos["problem_index"].tolist() == [2, 9]


@pytest.mark.parametrize("options", ["abc", 3, ["problem_index"]])
def test_options_that_are_not_a_dict_raise_a_type_error(kwargs: dict, options: object) -> None:
    env = gym.make("CoLA-GSM8K-v0", **kwargs)
    with pytest.raises(TypeError, match="options must be a dict"):
        env.reset(options=options)  # type: ignore[arg-type]


def test_an_unknown_option_names_the_accepted_ones(kwargs: dict) -> None:
    env = gym.make("CoLA-GSM8K-v0", **kwargs)
    with pytest.raises(ValueError, match=r"unknown reset option 'problem_idx'.*'problem_index'.*'task_index'"):
        env.reset(options={"problem_idx": 3})  # a typo must not silently draw a random problem
