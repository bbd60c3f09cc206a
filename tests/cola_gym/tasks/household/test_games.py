"""Generated games and the expert: splits, determinism, and shortest plans that always win."""

from __future__ import annotations

import collections

import pytest

from cola_gym.tasks.household import SPLIT_SIZES, TASK_TYPES, Game, WorldState, expert_plan, generate_game, step
from cola_gym.tasks.household.engine import actions, is_won
from cola_gym.tasks.household.generator import layout_numbers, room
from cola_gym.tasks.household.world import class_of


def play(game: Game, commands: list[str], state: WorldState | None = None) -> WorldState:
    state = game.start if state is None else state
    for command in commands:
        result = step(game, state, command)
        assert result.admissible, f"{game.name}: expert command {command!r} is not admissible"
        state = result.state
    return state


def test_the_expert_wins_1000_generated_games_and_every_evaluation_game() -> None:
    games = [generate_game("train", i) for i in range(1000)]
    games += [generate_game(split, i) for split in ("valid_seen", "valid_unseen") for i in range(SPLIT_SIZES[split])]
    lengths = collections.defaultdict(list)
    for game in games:
        plan = expert_plan(game)
        final = play(game, plan)
        assert is_won(game, final), game.name
        assert not any(is_won(game, play(game, plan[:n])) for n in range(len(plan))), "wins only at the end"
        lengths[game.goal.task_type].append(len(plan))
    assert set(lengths) == set(TASK_TYPES)
    assert min(map(min, lengths.values())) >= 3 and max(map(max, lengths.values())) <= 12


def test_the_expert_is_deterministic_and_plans_from_any_state() -> None:
    game = generate_game("valid_seen", 5)
    assert expert_plan(game) == expert_plan(generate_game("valid_seen", 5))
    plan = expert_plan(game)
    midway = play(game, plan[:1])  # after the first `go to`
    assert expert_plan(game, midway) == plan[1:]
    taken = next(n for n in range(len(plan)) if play(game, plan[:n]).holding is not None)
    assert expert_plan(game, play(game, plan[:taken])) == plan[taken:]  # holding what it needs: goes on
    assert expert_plan(game, play(game, plan)) == []


def test_the_expert_puts_down_what_it_does_not_need_and_never_processes_twice() -> None:
    for index in range(30):
        game = generate_game("valid_seen", index)
        state = game.start
        other = next((o for o in game.house.objects if class_of(o) not in (game.goal.obj, game.goal.toggle)), None)
        where = state.place_of(game.house, other) if other else None
        if other is None or where is None:
            continue
        opening = [f"open {where}"] if where in game.rules.openable else []
        state = play(game, [f"go to {where}", *opening, f"take {other} from {where}"])
        if state.holding != other:
            continue  # not a takeable object
        plan = expert_plan(game, state)
        assert plan[0].startswith(f"move {other} to"), plan
        assert is_won(game, play(game, plan, state))
    game = next(g for i in range(40) if (g := generate_game("valid_seen", i)).goal.task_type.startswith("pick_heat"))
    plan = expert_plan(game)
    heated = plan.index(next(c for c in plan if c.startswith("heat ")))
    rest = expert_plan(game, play(game, plan[: heated + 1]))
    assert rest == plan[heated + 1 :] and not any(c.startswith("heat ") for c in rest)


def _shortest_plan_length(game: Game, limit: int) -> int | None:
    """Breadth-first search over every state-changing admissible command, up to ``limit``."""
    frontier, seen = [game.start], {game.start}
    for depth in range(1, limit + 1):
        following = []
        for state in frontier:
            for command, action in actions(game, state).items():
                if action[0] in ("help", "look", "inventory", "examine", "examine_object"):
                    continue
                result = step(game, state, command)
                if result.won:
                    return depth
                if result.state not in seen:
                    seen.add(result.state)
                    following.append(result.state)
        frontier = following
    return None


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_expert_plans_are_shortest(task_type: str) -> None:
    """Breadth-first search finds no shorter plan (small rooms, to keep the search cheap)."""
    checked = 0
    for index in range(200):
        game = generate_game("train", index, task_type)
        if len(game.house.receptacles) > 9 or len(game.house.objects) > 12:
            continue
        plan = expert_plan(game)
        assert _shortest_plan_length(game, len(plan)) == len(plan), game.name
        checked += 1
        if checked == 4:
            break
    assert checked == 4


def test_games_are_pure_functions_of_split_type_and_index() -> None:
    assert generate_game("train", 7) == generate_game("train", 7)
    assert generate_game("train", 7) != generate_game("train", 8)
    assert generate_game("valid_seen", 7) != generate_game("train", 7)
    assert generate_game("train", 7, "pick_heat_then_place_in_recep").goal.task_type == "pick_heat_then_place_in_recep"
    kinds = collections.Counter(generate_game("valid_seen", i).goal.task_type for i in range(SPLIT_SIZES["valid_seen"]))
    assert set(kinds) == set(TASK_TYPES) and max(kinds.values()) - min(kinds.values()) <= 1
    assert SPLIT_SIZES["valid_seen"] == 140 and SPLIT_SIZES["valid_unseen"] == 134


def test_unseen_games_use_held_out_rooms_only() -> None:
    seen = {(g.house.scene, g.house.layout) for g in (generate_game("train", i) for i in range(600))}
    seen |= {(g.house.scene, g.house.layout) for g in (generate_game("valid_seen", i) for i in range(140))}
    unseen = {(g.house.scene, g.house.layout) for g in (generate_game("valid_unseen", i) for i in range(134))}
    assert seen and unseen and not seen & unseen
    assert set(layout_numbers("train")) == set(layout_numbers("valid_seen"))
    assert not set(layout_numbers("train")) & set(layout_numbers("valid_unseen"))


def test_generated_games_are_well_formed() -> None:
    for index in range(300):
        game = generate_game("train", index)
        goal, house = game.goal, game.house
        assert not is_won(game, game.start)
        assert f"Your task is to: {goal.sentence}" not in ("", None)
        assert goal.obj in goal.sentence and (goal.recep or goal.toggle) in goal.sentence
        assert house.receptacles == room(house.scene, house.layout)[0]
        if goal.task_type == "pick_two_obj_and_place":
            assert sum(class_of(o) == goal.obj for o in house.objects) >= 2
        if goal.task_type == "pick_heat_then_place_in_recep":
            assert "microwave 1" in house.receptacles and house.scene == "kitchen"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("test", 0), "split"),
        (("valid_seen", 140), "index"),
        (("valid_seen", -1), "index"),
        (("train", 0, "slice"), "task_type"),
    ],
)
def test_bad_game_requests(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_game(*args)
    with pytest.raises(ValueError, match="scene"):
        room("garage", 0)
