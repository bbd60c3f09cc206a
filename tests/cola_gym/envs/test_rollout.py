"""The envs' rollout loop: rows leave the batch as their episodes end, and each row's rollout
is what stepping a single env by hand gives."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from cola_gym.envs import Episode, LatentActionEnv, LatentActionVectorEnv, Task, TaskStart, TurnOutcome
from cola_gym.envs.episode import episode_text
from cola_gym.envs.rollout import rollout
from cola_gym.model import CoLAModel, DecodingState

MAX_TOKENS = 14
TURN_LENGTHS = (3, 24, 10_000)  # characters per turn: row 2 never ends within MAX_TOKENS


class TwoTurnTask(Task[tuple[int, int]]):
    """Two turns of at least ``TURN_LENGTHS[task_index]`` characters; the second pays 1.

    Its state is ``(turns taken, characters per turn)``.
    """

    @property
    def num_tasks(self) -> int:
        return len(TURN_LENGTHS)

    def begin(self, options: Mapping[str, Any], rng: Any) -> TaskStart[tuple[int, int]]:
        index = options.get("task_index", 0)
        return TaskStart((0, TURN_LENGTHS[index]), ({"role": "user", "content": f"Talk for a while ({index})."},),
                         index)  # fmt: skip

    def turn_complete(self, state: tuple[int, int], turn_text: str) -> bool:
        return len(turn_text) >= state[1]

    def end_turn(self, state: tuple[int, int], turn_text: str) -> TurnOutcome[tuple[int, int]]:
        if state[0] == 0:
            return TurnOutcome((1, state[1]), terminated=False, next_message="Go on, please.")
        return TurnOutcome((2, state[1]), reward=1.0)


def _action(row: int, episode: Episode, num_actions: int) -> int:
    """A fixed action per row and step, so that the hand-stepped env takes the same ones."""
    return (5 * row + 3 * episode.num_tokens + 1) % num_actions


def _by_hand(model: CoLAModel, row: int) -> dict[str, Any]:
    """Row ``row`` stepped in a single env: actions, fed tokens, positions, reward, text."""
    env = LatentActionEnv(TwoTurnTask(), model=model)
    consumed: list[int] = []

    def record(module, args, kwargs) -> None:
        consumed.extend(kwargs["input_ids"][0].tolist())

    handle = model.decoder_base.register_forward_pre_hook(record, with_kwargs=True)
    try:
        env.reset(options={"task_index": row})
        prompt_length = len(consumed)
        actions, positions, reward, terminated, info = [], [], 0.0, False, {}
        while not terminated and len(actions) < MAX_TOKENS:
            assert env.episode is not None
            actions.append(_action(row, env.episode, env.num_actions))
            positions.append(len(consumed) - prompt_length)
            _, reward, terminated, _, info = env.step(actions[-1])
    finally:
        handle.remove()
    return {"actions": actions, "tokens": consumed[prompt_length:], "positions": positions,
            "finished": terminated, "reward": reward if terminated else 0.0, "text": info["text"]}  # fmt: skip


def test_rollout_equals_stepping_each_env_by_hand(tiny_cola: CoLAModel) -> None:
    vector = LatentActionVectorEnv(num_envs=3, task=TwoTurnTask(), model=tiny_cola)
    vector.reset(options=[{"task_index": row} for row in range(3)])
    episodes, state = vector.episodes, vector.decoding_state
    assert state is not None
    seen: list[list[int]] = []

    def choose(rows: Sequence[int], current: Sequence[Episode], batch: DecodingState) -> list[int]:
        assert batch.batch_size == len(rows) == len(current)
        seen.append(list(rows))
        return [_action(row, episode, vector.stepper.num_actions) for row, episode in zip(rows, current, strict=True)]

    rolled = rollout(vector.stepper, episodes, state, choose, MAX_TOKENS)
    for row, result in enumerate(rolled):
        expected = _by_hand(tiny_cola, row)
        found = {"actions": result.actions, "tokens": result.tokens, "positions": result.positions,
                 "finished": result.finished, "reward": result.reward,
                 "text": episode_text(result.episode)}  # fmt: skip
        assert found == expected, row
    assert rolled[0].finished and rolled[0].reward == 1.0 and not rolled[2].finished
    assert len(rolled[2].actions) == MAX_TOKENS
    assert "Go on, please." in episode_text(rolled[0].episode)
    # rows leave the batch when their episodes end; the others go on in order
    sizes = [len(rows) for rows in seen]
    assert seen[0] == [0, 1, 2] and seen[-1] == [2] and sizes == sorted(sizes, reverse=True)
    # a rollout is pure: the env's episodes and state are as they were
    assert vector.episodes == episodes and vector.decoding_state is state


def test_rows_already_over_are_returned_as_they_are(tiny_cola: CoLAModel) -> None:
    vector = LatentActionVectorEnv(num_envs=2, task=TwoTurnTask(), model=tiny_cola)
    vector.reset(options=[{"task_index": 2}, {"task_index": 2}])
    over = dataclasses.replace(vector.episodes[0], done=True)
    state = vector.decoding_state
    assert state is not None
    rows_seen: list[list[int]] = []

    def choose(rows: Sequence[int], current: Sequence[Episode], batch: DecodingState) -> list[int]:
        rows_seen.append(list(rows))
        return [0] * len(rows)

    first, second = rollout(vector.stepper, [over, vector.episodes[1]], state, choose, 3)
    assert first.episode is over and first.actions == [] and first.finished and first.reward == 0.0
    assert len(second.actions) == 3 and rows_seen == [[1], [1], [1]]
    with pytest.raises(ValueError, match="3 episodes for a decoding state of 2 rows"):
        rollout(vector.stepper, [over, over, over], state, choose, 3)
