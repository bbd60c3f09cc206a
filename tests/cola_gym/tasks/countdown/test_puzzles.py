"""Countdown puzzles: every generated puzzle is solvable, sets are fixed by seed, splits are disjoint."""

from __future__ import annotations

import pytest

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.registration import load_task_specs
from cola_gym.tasks.countdown.expressions import parse_expression, uses_numbers_exactly
from cola_gym.tasks.countdown.puzzles import CountdownLevel, generate_puzzle, solve
from cola_gym.tasks.countdown.task import CountdownTask, solution_text

LEVELS = {name: CountdownLevel.from_spec(table) for name, table in load_task_specs()["countdown"]["levels"].items()}


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_the_solver_solves_1000_seeds_of_every_level(name: str) -> None:
    level = LEVELS[name]
    for seed in range(1000):
        puzzle = generate_puzzle(level, seed, 0)
        assert level.min_numbers <= len(puzzle.numbers) <= level.max_numbers
        assert all(level.min_value <= n <= level.max_value for n in puzzle.numbers)
        assert level.min_target <= puzzle.target <= level.max_target
        solution = solve(puzzle.numbers, puzzle.target)
        assert solution is not None, puzzle
        expression = parse_expression(solution.expression)  # the solver's answers pass the grader
        assert expression.value == puzzle.target and uses_numbers_exactly(expression.numbers, puzzle.numbers)


def test_the_solver_says_when_there_is_none() -> None:
    assert solve([2, 2], 5) is None
    assert solve([1, 1, 1], 10) is None
    assert solve([4, 6], 24, operators=("+", "-")) is None
    assert solve([8, 3], 24).expression == "3 * 8"  # type: ignore[union-attr]


def test_a_set_is_fixed_by_its_seed_and_seeds_differ() -> None:
    level = LEVELS["standard"]
    first = [generate_puzzle(level, 1, i) for i in range(50)]
    assert first == [generate_puzzle(level, 1, i) for i in reversed(range(50))][::-1]  # order of access is irrelevant
    other = [generate_puzzle(level, 2, i) for i in range(50)]
    assert sum(a.key == b.key for a, b in zip(first, other, strict=True)) <= 1
    assert len({p.key for p in first}) == 50


@pytest.mark.parametrize("name", ["easy", "medium"])
def test_train_puzzles_are_never_test_puzzles(name: str) -> None:
    test = CountdownTask(LEVELS[name], split="test")
    train = CountdownTask(LEVELS[name], split="train")
    held_out = {test.puzzle(i).key for i in range(test.num_tasks)}
    drawn = [train.puzzle(i).key for i in range(2000)]
    assert not held_out & set(drawn)
    # without the exclusion the small easy space would overlap
    raw = {generate_puzzle(LEVELS[name], 0, i).key for i in range(2000)}
    assert name != "easy" or raw & held_out


def test_demonstrations_are_solver_answers_in_the_format() -> None:
    task = CountdownTask(LEVELS["easy"], split="train", size=20)
    for messages, response in task.demonstrations():
        assert "<think>" in response and response.endswith("</answer>")
        numbers = [int(n) for n in messages[0]["content"].split("[")[1].split("]")[0].split(", ")]
        target = int(messages[0]["content"].split("equals ")[1].split(".")[0])
        answer = response.split("<answer>")[1].removesuffix("</answer>")
        assert parse_expression(answer).value == target
        assert sorted(parse_expression(answer).numbers) == sorted(numbers)
    assert len(list(task.demonstrations())) == 20
    assert solution_text(solve([8, 3], 24)).startswith("<think>3 * 8 = 24.")  # type: ignore[arg-type]


def test_bad_levels_and_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown Countdown level keys"):
        CountdownLevel.from_spec({"numbers": 3})
    with pytest.raises(ValueError, match="min_numbers"):
        CountdownLevel(min_numbers=1)
    with pytest.raises(ValueError, match="operators"):
        CountdownLevel(operators=("+", "**"))
    with pytest.raises(ValueError, match="no puzzle found"):
        generate_puzzle(CountdownLevel(3, 3, 1, 2, ("+",), 50, 60), 0, 0)
    with pytest.raises(ValueError, match="split"):
        CountdownTask(split="valid")
    with pytest.raises(ValueError, match="format_reward"):
        CountdownTask(format_reward=1.5)
