"""The episode core on a stateful task: its state lives in episode values, so search can branch
it, the vector env equals single envs on it, and resets are all or nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import cola_gym  # noqa: F401 - registers the ids
from cola_agents.mcts import MCTSConfig
from cola_agents.mcts.env_model import CoLASearchModel
from cola_agents.mcts.search import nodes, search
from cola_gym.envs import LatentActionEnv, LatentActionVectorEnv, Task, TaskStart, TurnOutcome
from cola_gym.model import CoLAModel
from cola_gym.registration import ENV_ENTRY_POINT, VECTOR_ENTRY_POINT

GAME_ID = "Test-CoinGame-v0"


@dataclass(frozen=True)
class Purse:
    """The game's world: coins in the purse and the items bought, in order."""

    coins: int
    items: tuple[str, ...] = ()


class CoinGameTask(Task[Purse]):
    """A multi-turn shop: every turn of 10 characters buys the item its text starts with, if the
    purse allows; the shop answers with the purse. After three turns, an even number of coins
    left wins. Outcomes depend on the whole history, held only in the task state."""

    info_keys = ("coins", "items")
    option_keys = ("coins",)

    def __init__(self, turn_chars: int = 10) -> None:
        self.turn_chars = turn_chars

    @property
    def num_tasks(self) -> int:
        return 10

    def begin(self, options: Mapping[str, Any], rng: np.random.Generator) -> TaskStart[Purse]:
        index = options.get("task_index", int(rng.integers(10)))
        coins = int(options.get("coins", 5 + index))
        return TaskStart(Purse(coins), ({"role": "user", "content": f"You have {coins} coins. Buy something."},), index)

    def turn_complete(self, state: Purse, turn_text: str) -> bool:
        return len(turn_text) >= self.turn_chars

    def end_turn(self, state: Purse, turn_text: str) -> TurnOutcome[Purse]:
        price = len(turn_text.strip()) % 4 + 1
        bought = replace(state, coins=state.coins - price, items=(*state.items, turn_text.strip()[:3]))
        purse = bought if bought.coins >= 0 else state
        if len(state.items) + 1 >= 3:
            won = purse.coins % 2 == 0
            return TurnOutcome(purse, reward=float(won), success=won)
        return TurnOutcome(purse, terminated=False, next_message=f"You have {purse.coins} coins left.")

    def info(self, state: Purse) -> dict[str, Any]:
        return {"coins": state.coins, "items": "|".join(state.items)}


@pytest.fixture(scope="module")
def game(tiny_cola_dir: Path) -> str:
    if GAME_ID not in gym.registry:
        gym.register(GAME_ID, entry_point=ENV_ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT,
                     max_episode_steps=40, kwargs={"task": CoinGameTask(), "model": str(tiny_cola_dir)})  # fmt: skip
    return GAME_ID


def _play(env: gym.Env, actions: list[int]) -> list[tuple]:
    steps = []
    for action in actions:
        steps.append(env.step(action))
        if steps[-1][2] or steps[-1][3]:
            break
    return steps


def test_search_from_a_snapshot_leaves_the_episode_exactly_as_it_was(game: str, tiny_cola: CoLAModel) -> None:
    actions = np.random.default_rng(1).integers(0, 64, size=40).tolist()
    searched, plain = gym.make(game, track_policy=True), gym.make(game, track_policy=True)
    searched.reset(seed=3)
    plain.reset(seed=3)
    base = searched.unwrapped
    taken = 0
    while not base.episode.task_state.items:  # play until a turn is done: the world has changed
        searched.step(actions[taken])
        taken += 1
    _play(plain, actions[:taken])
    assert not base.episode.done
    model = CoLASearchModel.for_env(base)
    config = MCTSConfig(num_simulations=12, root_width=4, rollout_max_tokens=30, leaf_value="oracle", seed=0)
    result = search(model, [model.root(base.episode, base.decoding_state)], config)[0]
    assert result.tokens > 30  # the search played the game on many branches
    worlds = {node.handle.episode.task_state for node in nodes(result.root)}
    assert len(worlds) > 2, "each branch carries its own world"
    rest, expected = _play(searched, actions[taken:]), _play(plain, actions[taken:])
    assert data_equivalence(rest, expected)
    assert rest[-1][2] and rest[-1][4]["items"].count("|") == 2


def test_snapshots_restore_the_world(game: str) -> None:
    env = gym.make(game)
    env.reset(seed=0)
    _play(env, [1, 2, 3, 4])
    snapshot = env.unwrapped.snapshot()
    first = _play(env, list(range(5, 30)))
    env.unwrapped.restore(snapshot)
    assert data_equivalence(_play(env, list(range(5, 30))), first)


def test_the_vector_env_equals_single_envs_on_the_game(game: str) -> None:
    vector = gym.make_vec(game, num_envs=3, vectorization_mode="vector_entry_point")
    assert isinstance(vector.unwrapped, LatentActionVectorEnv)
    reference = SyncVectorEnv([lambda: gym.make(game) for _ in range(3)], autoreset_mode=AutoresetMode.SAME_STEP)
    (obs, infos), (ref_obs, ref_infos) = vector.reset(seed=5), reference.reset(seed=5)
    np.testing.assert_allclose(obs, ref_obs, atol=2e-4)
    assert data_equivalence(infos, ref_infos)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(45):
        actions = rng.integers(0, 64, size=3)
        ours, theirs = vector.step(actions), reference.step(actions)
        np.testing.assert_allclose(ours[0], theirs[0], atol=2e-4)
        for got, expected in zip(ours[1:4], theirs[1:4], strict=True):
            np.testing.assert_array_equal(got, expected)
        for key in ("text", "coins", "items", "is_success", "task_index", "num_tokens"):
            np.testing.assert_array_equal(ours[4][key], theirs[4][key], err_msg=key)
        ended += int(np.sum(ours[2] | ours[3]))
    assert ended >= 3


# ---------------------------------------------------------------- resets: all or nothing
def _vector(game: str, num_envs: int = 3) -> LatentActionVectorEnv:
    return gym.make_vec(game, num_envs=num_envs, vectorization_mode="vector_entry_point").unwrapped


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ([{"task_index": 1}, {"task_index": 99}, {"task_index": 2}], ValueError, r"task_index.*\[0, 10\)"),
        ([{"task_index": 1}, {"tsk_index": 2}, None], ValueError, r"unknown reset option 'tsk_index'.*'coins'"),
        ([{"task_index": 1}, "abc", None], TypeError, r"options must be a dict"),
        ("abc", TypeError, r"options must be a dict"),
        ([{"task_index": 1}], ValueError, r"got 1 options for 3 envs"),
    ],
)
def test_a_bad_vector_reset_changes_nothing(game: str, options: Any, error: type, message: str) -> None:
    vector, twin = _vector(game), _vector(game)
    vector.reset(seed=1)
    twin.reset(seed=1)
    vector.step(np.array([1, 2, 3]))
    twin.step(np.array([1, 2, 3]))
    with pytest.raises(error, match=message):
        vector.reset(options=options)
    for _ in range(12):  # the running episodes go on as if nothing happened, autoresets included
        actions = np.array([4, 5, 6])
        assert data_equivalence(vector.step(actions), twin.step(actions))


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"task_index": 10}, ValueError, r"task_index.*\[0, 10\)"),
        ({"task_index": True}, ValueError, r"task_index"),
        ({"coins": 3, "colour": "red"}, ValueError, r"unknown reset option 'colour'"),
        ("abc", TypeError, r"options must be a dict such as \{'task_index': 3\}"),
        ([1, 2], TypeError, r"options must be a dict"),
    ],
)
def test_a_bad_single_reset_keeps_the_running_episode(game: str, options: Any, error: type, message: str) -> None:
    env, twin = gym.make(game), gym.make(game)
    env.reset(seed=2)
    twin.reset(seed=2)
    _play(env, [7, 8])
    _play(twin, [7, 8])
    with pytest.raises(error, match=message):
        env.reset(seed=9, options=options)
    assert data_equivalence(_play(env, list(range(9, 40))), _play(twin, list(range(9, 40))))
    assert data_equivalence(env.reset(), twin.reset())  # nor did its generator move


def test_numpy_integers_and_aliases_are_accepted(game: str, tiny_cola_dir: Path, data_dir: Path) -> None:
    _, info = gym.make(game).reset(options={"task_index": np.int64(4)})
    assert info["task_index"] == 4 and info["coins"] == 9
    vector = _vector(game, 2)
    _, infos = vector.reset(options=[{"task_index": np.int32(2)}, {"task_index": np.uint8(3), "coins": 1}])
    assert infos["task_index"].tolist() == [2, 3] and infos["coins"].tolist() == [7, 1]
    math = gym.make("CoLA-GSM8K-v0", model=str(tiny_cola_dir), data_dir=str(data_dir))
    _, info = math.reset(options={"problem_index": np.int64(7)})
    assert info["task_index"] == info["problem_index"] == 7
    with pytest.raises(ValueError, match="given twice"):
        math.reset(options={"problem_index": 1, "task_index": 2})


def test_a_task_is_a_class_and_an_entry(game: str) -> None:
    """The generic env and vector env serve any task; the hooks a task must write are abstract."""
    env = gym.make(game)
    assert type(env.unwrapped) is LatentActionEnv and isinstance(env.unwrapped.task, CoinGameTask)
    with pytest.raises(TypeError, match="abstract"):
        Task()  # type: ignore[abstract]
    with pytest.raises(ValueError, match="needs a next_message"):
        TurnOutcome(Purse(1), terminated=False)
