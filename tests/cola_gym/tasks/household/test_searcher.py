"""The searching expert: wins without knowing where objects are, looks before it takes, and
labels any state another policy reaches (DAgger)."""

from __future__ import annotations

import numpy as np
import pytest

from cola_gym.tasks.household import TASK_TYPES, admissible_commands, expert_plan, generate_game, is_won, step
from cola_gym.tasks.household.searcher import expert_labels, replay, searching_command, searching_plan, seen_after


@pytest.mark.parametrize("split", ["valid_seen", "valid_unseen"])
def test_it_wins_every_type_of_game_and_only_takes_what_it_has_seen(split: str) -> None:
    types = set()
    for index in range(36):
        game = generate_game(split, index)
        plan = searching_plan(game)
        state, seen = game.start, frozenset[str]()
        for command in plan:
            if command.startswith("take "):
                source = command.split(" from ")[1]
                assert source in seen, (game.name, command, sorted(seen))
            result = step(game, state, command)
            assert result.admissible, (game.name, command)
            state, seen = result.state, seen_after(game, result.state, seen)
        assert is_won(game, state)
        assert len(plan) >= len(expert_plan(game))  # knowing less never shortens a game
        types.add(game.goal.task_type)
    assert types == set(TASK_TYPES)


def test_it_explores_before_it_knows() -> None:
    game = generate_game("valid_seen", 0)
    first = searching_command(game, game.start, frozenset())
    assert first.startswith("go to ")  # nothing is seen at the start: it cannot plan a take
    everything = frozenset(game.house.receptacles)
    assert searching_command(game, game.start, everything) == expert_plan(game)[0]  # all seen: the oracle


def test_it_labels_the_states_a_random_walk_reaches_and_recovers_from_them() -> None:
    rng = np.random.default_rng(0)
    for index in range(12):
        game = generate_game("valid_unseen", index)
        walk, state = [], game.start
        for _ in range(8):
            choices = [*admissible_commands(game, state), "fly to the moon"]  # valid and invalid commands
            command = choices[int(rng.integers(len(choices)))]
            walk.append(command)
            state = step(game, state, command).state
            if is_won(game, state):
                break
        labels = expert_labels(game, walk)
        assert len(labels) == len(walk) + 1
        for n, label in enumerate(labels):
            state, seen = replay(game, walk[:n])
            if label is None:
                assert is_won(game, state)
                continue
            assert step(game, state, label).admissible, (game.name, walk[:n], label)
        state, seen = replay(game, walk)
        for _ in range(60):  # from wherever the walk left it, the expert wins
            if is_won(game, state):
                break
            state = step(game, state, searching_command(game, state, seen)).state
            seen = seen_after(game, state, seen)
        assert is_won(game, state), game.name


def test_a_won_game_has_no_next_command() -> None:
    game = generate_game("valid_seen", 1)
    state, seen = replay(game, expert_plan(game))
    with pytest.raises(ValueError, match="won"):
        searching_command(game, state, seen)
