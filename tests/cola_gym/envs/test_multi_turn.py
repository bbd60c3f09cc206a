"""A multi-turn task on the base env: the task's message is one cached prefill."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from cola_gym.envs import LatentActionEnv, Task, TaskStart, TurnOutcome


class KeyRoomTask(Task[int]):
    """A two-turn text task: whatever the agent says first, the room answers; then it is scored.

    Its state is the number of turns taken.
    """

    info_keys = ("turns",)

    def begin(self, options: Mapping[str, Any], rng: Any) -> TaskStart[int]:
        return TaskStart(0, ({"role": "user", "content": "You are in a room. What do you do?"},))

    def turn_complete(self, state: int, turn_text: str) -> bool:
        return len(turn_text) >= 12

    def end_turn(self, state: int, turn_text: str) -> TurnOutcome[int]:
        if state == 0:
            return TurnOutcome(1, terminated=False, next_message="You see a key on the table.")
        return TurnOutcome(state + 1, reward=1.0)

    def info(self, state: int) -> dict[str, Any]:
        return {"turns": state}


def test_the_message_is_appended_in_one_cached_prefill(tiny_cola) -> None:
    env = LatentActionEnv(KeyRoomTask(), model=tiny_cola, render_mode="ansi")
    consumed: list[int] = []
    calls: list[int] = []

    def record(module, args, kwargs):
        ids = kwargs["input_ids"]
        calls.append(ids.shape[1])
        consumed.extend(ids[0].tolist())

    handle = env.model.decoder_base.register_forward_pre_hook(record, with_kwargs=True)
    try:
        env.reset(seed=0)
        rewards, infos, calls_per_step = [], [], []
        for step in range(200):
            before = len(calls)
            _, reward, terminated, _, info = env.step(step % env.num_actions)
            calls_per_step.append(len(calls) - before)
            rewards.append(reward)
            infos.append(info)
            if terminated:
                break
    finally:
        handle.remove()
    assert terminated and rewards[-1] == 1.0 and sum(rewards) == 1.0
    turn_two = next(i for i, info in enumerate(infos) if info["turns"] == 1)
    assert calls_per_step[turn_two] == 1, "the turn end and the message must be one decoder call"
    assert calls[1 + turn_two] > 5, "that call carries the whole message"
    assert "You see a key on the table." in infos[turn_two]["text"]
    assert env.render().count("You see a key on the table.") == 1
    # the cached state equals re-encoding everything the decoder consumed, at once
    with torch.no_grad():
        hidden = env.model.hidden_states(torch.tensor([consumed]))[:, -1]
    state = env.decoding_state
    assert state.length == len(consumed)  # the token that ended the episode is never fed
    assert infos[-1]["turns"] == 2 and infos[-1]["num_tokens"] == len(infos)
    assert torch.allclose(hidden, state.hidden, atol=1e-5)
