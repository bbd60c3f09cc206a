"""Every registered id: Gymnasium's and SB3's checkers, a determinism rollout, pickling."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.utils.env_checker import data_equivalence

import cola_gym

IDS = cola_gym.ENV_IDS


@pytest.fixture
def make(tiny_cola_dir: Path, data_dir: Path):
    def make_env(env_id: str, **kwargs):
        return gym.make(env_id, model=str(tiny_cola_dir), data_dir=str(data_dir), **kwargs)

    return make_env


def test_the_math_ids_are_registered() -> None:
    expected = {"CoLA-Math500-v0", "CoLA-MATH-v0", "CoLA-MATH-Train-v0", "CoLA-GSM8K-v0", "CoLA-GSM8K-Train-v0"}
    assert expected <= set(IDS)
    assert all(gym.spec(env_id).max_episode_steps for env_id in IDS)


@pytest.mark.parametrize("env_id", IDS)
def test_checkers_pass_without_warnings(env_id: str, make) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = make(env_id, render_mode="ansi")
        gym_check_env(env.unwrapped)
        sb3_check_env(env, warn=True)
        env.close()
    ours = [w for w in caught if "gymnasium" in w.filename or "stable_baselines3" in w.filename]
    assert not ours, [str(w.message) for w in ours]


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_episode(env_id: str, make) -> None:
    envs = [make(env_id), make(env_id)]
    actions = np.random.default_rng(0).integers(0, envs[0].action_space.n, size=50)
    trajectories = []
    for env in envs:
        steps = [env.reset(seed=7)]
        for action in actions:
            obs, reward, terminated, truncated, info = env.step(action)
            steps.append((obs, reward, terminated, truncated, info))
            if terminated or truncated:
                break
        trajectories.append(steps)
    assert data_equivalence(trajectories[0], trajectories[1])
    assert len(trajectories[0]) > 1
    # a different seed picks another problem
    other, _ = envs[0].reset(seed=8)
    index = envs[0].unwrapped.episode.task_index
    assert trajectories[0][0][1]["task_index"] != index or not np.array_equal(other, trajectories[0][0][0])


@pytest.mark.parametrize("env_id", IDS)
def test_pickled_env_behaves_the_same(env_id: str, make) -> None:
    env = make(env_id)
    env.reset(seed=3)
    blob = pickle.dumps(env)
    assert len(blob) < 200_000, "the model or the data set was pickled with the env"
    restored = pickle.loads(blob)
    assert restored.unwrapped.model is env.unwrapped.model
    assert data_equivalence(env.reset(seed=11), restored.reset(seed=11))
    assert data_equivalence(env.step(5), restored.step(5))


def test_spec_entries_name_levels_and_default_models() -> None:
    from cola_gym.registration import parse_specs

    spec = {
        "task": "m:C",
        "model": "smollm2-135m-instruct",
        "token_twins": True,
        "levels": {"easy": {"max_value": 10}},
        "env": [
            {"id": "X-Easy-v0", "level": "easy", "train_id": "X-Easy-Train-v0"},
            {"id": "X-Easy-Train-v0", "level": "easy", "data_name": "x:train"},
            {"id": "X-v0"},
        ],
    }
    entries = parse_specs({"t": spec})
    first, plain = entries["X-Easy-v0"], entries["X-v0"]
    assert first.task_kwargs["level"] == {"max_value": 10} and "level" not in plain.task_kwargs
    assert first.registration()["kwargs"]["level"] == {"max_value": 10}
    assert Path(first.model).name == "smollm2-135m-instruct"
    assert (Path(first.model) / "cola_config.json").is_file()
    assert entries.ladder == {"X-Easy-v0": "easy"}  # evaluation ids only: no training ids, no twins
    assert first.train_id == "X-Easy-Train-v0" and entries["X-Easy-Train-v0"].is_train
    assert entries.by_data_name == {"x:train": "X-Easy-Train-v0"}
    twin = entries[first.token_twin]
    assert (twin.id, twin.action_kind, twin.twin_of) == ("X-Easy-Token-v0", "token", "X-Easy-v0")
    assert twin.train_id == "X-Easy-Train-Token-v0" and twin.registration()["kwargs"]["action_kind"] == "token"
    with pytest.raises(ValueError, match="no pretrained model 'nope'"):
        parse_specs({"t": {**spec, "model": "nope"}})
    with pytest.raises(ValueError, match="unknown level 'hard'"):
        parse_specs({"t": {**spec, "env": [{"id": "X-v0", "level": "hard"}]}})
    with pytest.raises(ValueError, match="names train_id 'X-Nope-v0'"):
        parse_specs({"t": {**spec, "env": [{"id": "X-v0", "train_id": "X-Nope-v0"}]}})
    with pytest.raises(KeyError, match="no cola-gym env 'X-Gone-v0'"):
        entries["X-Gone-v0"]


def test_task_for_builds_the_task_of_every_family(data_dir: Path) -> None:
    from cola_gym.registration import registry, task_for
    from cola_gym.tasks.countdown.task import CountdownTask

    entries = registry()
    for family in ("math", "countdown", "reasoning", "household"):
        env_id = next(e.id for e in entries.values() if e.family == family and not e.is_train and e.twin_of is None)
        task = task_for(env_id, data_dir=str(data_dir), observation="hidden")  # env keywords are ignored
        assert type(task).__name__ == entries[env_id].task.rpartition(":")[2]
    train = task_for(entries["CoLA-Countdown-Easy-v0"].train_id)
    assert isinstance(train, CountdownTask) and train.split == "train"
    assert task_for("CoLA-Countdown-Easy-v0", size=7).num_tasks == 7  # a task argument overrides the spec


def test_every_held_out_household_id_trains_on_training_games() -> None:
    """A benchmark suite trains on an evaluation id's ``train_id``, else on the id itself: a held-out
    household id without one would train on the games it is evaluated on."""
    from cola_gym.registration import registry, task_for

    held_out = [e for e in registry().values() if e.family == "household" and not e.is_train]
    assert len(held_out) >= 4
    for entry in held_out:
        assert entry.train_id is not None, f"{entry.id} names no train_id"
        assert task_for(entry.train_id).split == "train", entry.id  # type: ignore[attr-defined]
