"""The math task in its env: rewards end to end, options, errors that lose nothing, sharing, snapshots."""

from __future__ import annotations

import copy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.errors import DataNotFoundError, EpisodeOverError, InvalidActionError, ModelNotFoundError


@pytest.fixture
def make(tiny_cola_dir: Path, data_dir: Path):
    def make_env(env_id: str = "CoLA-GSM8K-v0", **kwargs):
        kwargs.setdefault("model", str(tiny_cola_dir))
        return gym.make(env_id, data_dir=str(data_dir), **kwargs)

    return make_env


def _run(env: gym.Env, actions: list[int]) -> tuple[float, bool, bool, dict]:
    reward, terminated, truncated, info = 0.0, False, False, {}
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return reward, terminated, truncated, info


def test_a_right_answer_earns_1_and_ends_the_episode(make, speller) -> None:
    model, spell = speller
    env = make("CoLA-GSM8K-v0", model=model)
    env.reset(options={"problem_index": 0})
    assert env.unwrapped.episode.task_state.problem.answer == "18"
    actions = spell(r"She makes 9 * 2 = 18 dollars, so \boxed{18} and more text")
    reward, terminated, truncated, info = _run(env, actions)
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["answer"] == "18" and info["is_correct"] is True
    assert info["text"].endswith(r"\boxed{18}")  # stopped as soon as the answer was complete


def test_a_wrong_answer_earns_0(make, speller) -> None:
    model, spell = speller
    env = make("CoLA-Math500-v0", model=model)
    env.reset(options={"problem_index": 2})
    reward, terminated, _, info = _run(env, spell(r"It is \boxed{\frac{14}{5}}"))
    assert (reward, terminated, info["answer"], info["is_correct"]) == (0.0, True, r"\frac{14}{5}", False)
    env.reset(options={"problem_index": 2})
    assert env.unwrapped.episode.task_state.problem.answer == r"\frac{14}{3}"
    reward, terminated, _, info = _run(env, spell(r"It is \boxed{\dfrac{14}{3}}"))
    assert (reward, terminated, info["is_correct"]) == (1.0, True, True)


def test_the_step_limit_truncates_with_no_reward(make) -> None:
    env = make("CoLA-GSM8K-v0", max_episode_steps=5)
    env.reset(seed=0)
    rewards, truncated = [], False
    for _ in range(5):
        _, reward, terminated, truncated, info = env.step(0)
        rewards.append(reward)
        assert not terminated
    assert truncated and rewards == [0.0] * 5 and info["num_tokens"] == 5


def test_info_has_stable_keys(make) -> None:
    env = make()
    _, info = env.reset(seed=1)
    keys = set(info)
    assert keys == {"text", "num_tokens", "is_success", "task_index", "answer", "is_correct", "problem_index"}
    for action in range(10):
        _, _, terminated, truncated, info = env.step(action)
        assert set(info) == keys
        if terminated or truncated:
            break


def test_problem_index_option(make) -> None:
    env = make("CoLA-Math500-v0")
    for index in (0, 499):
        _, info = env.reset(options={"problem_index": index})
        assert info["problem_index"] == index
    for bad in (500, -1, "3", 2.0):
        with pytest.raises(ValueError, match=r"task_index.*\[0, 500\)"):
            env.reset(options={"problem_index": bad})


@pytest.mark.parametrize("bad_action", [64, -1, 3.5, "7", None, True, np.array([1, 2])])
def test_invalid_actions_raise_and_lose_nothing(make, bad_action) -> None:
    env, twin = make(), make()
    env.reset(seed=4)
    twin.reset(seed=4)
    env.step(3)
    twin.step(3)
    with pytest.raises(InvalidActionError, match=r"integer latent code in \[0, 64\)"):
        env.step(bad_action)
    assert data_equivalence(env.step(np.int64(9)), twin.step(9))


def test_step_outside_an_episode_is_an_error(make, speller) -> None:
    for env in (make(), make().unwrapped):  # through gym.make's wrappers too
        with pytest.raises(EpisodeOverError, match="before reset"):
            env.step(0)
    model, spell = speller
    env = make("CoLA-GSM8K-v0", model=model)
    env.reset(options={"problem_index": 0})
    _run(env, spell(r"\boxed{1}"))
    with pytest.raises(EpisodeOverError, match="after the episode ended"):
        env.step(0)
    env.reset()
    env.step(0)  # a reset starts a new episode


def test_one_model_per_process_never_copied(make) -> None:
    first, second = make(), make("CoLA-Math500-v0")
    assert first.unwrapped.model is second.unwrapped.model
    assert copy.deepcopy(first).unwrapped.model is first.unwrapped.model


def test_missing_data_names_all_three_sources(tiny_cola_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("COLA_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as caught:
        gym.make("CoLA-GSM8K-v0", model=str(tiny_cola_dir), data_dir=str(tmp_path))
    message = str(caught.value)
    assert "data_dir argument" in message and "$COLA_DATA_DIR" in message and "Hugging Face Hub" in message
    assert str(tmp_path / "gsm8k" / "test.jsonl") in message


def test_data_dir_from_the_environment(tiny_cola_dir: Path, data_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLA_DATA_DIR", str(data_dir))
    env = gym.make("CoLA-GSM8K-v0", model=str(tiny_cola_dir))
    assert len(env.unwrapped.task.problems) == 1319


def test_missing_model_path(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="No model directory"):
        gym.make("CoLA-GSM8K-v0", model=str(tmp_path / "missing"), data_dir=str(data_dir))


def test_render_and_snapshots(make) -> None:
    env = make(render_mode="ansi")
    env.reset(seed=2)
    base = env.unwrapped
    assert base.episode.task_state.problem.problem in env.render()
    for action in (1, 2, 3):
        env.step(action)
    snapshot = base.snapshot()
    branch_a = [env.step(a) for a in (10, 20, 30)]
    base.restore(snapshot)
    branch_b = [env.step(a) for a in (10, 20, 30)]
    assert data_equivalence(branch_a, branch_b)
    env.reset(seed=2)
    with pytest.raises(ValueError, match="another episode"):
        base.restore(snapshot)


def test_action_masks_allow_every_code(make) -> None:
    env = make()
    env.reset(seed=0)
    masks = env.unwrapped.action_masks()
    assert masks.dtype == bool and masks.shape == (64,) and masks.all()
