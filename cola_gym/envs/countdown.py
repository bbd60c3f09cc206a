"""Countdown with a thinking prompt: reach a target with the given numbers.

The prompt (TinyZero's, for chat models) asks for the search written out inside
``<think>...</think>`` and the final expression inside ``<answer>...</answer>``. The episode
terminates as soon as ``</answer>`` is written (or at an end-of-sequence token). Reward:

* 1.0: the answer is an arithmetic expression that uses every given number exactly once
  and equals the target;
* ``format_reward`` (default 0.1): the answer is an arithmetic expression (only integers,
  ``+ - * /`` and parentheses: :mod:`cola_gym.rewards.expressions`) but wrong;
* 0: no ``<answer>`` tags, or their content is not such an expression (``3!``, ``2**5``,
  ``= 24``, words).

Puzzles come from :mod:`cola_gym.data.countdown` by level, split and index: the test split
is a fixed evaluation set (seed 1), the train split (seed 0) never repeats a test puzzle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from cola_gym.data.countdown import (
    CountdownLevel,
    CountdownPuzzle,
    Solution,
    all_solutions,
    generate_puzzle,
    solve,
)
from cola_gym.envs.task import TASK_INDEX, Message, Task, TaskStart, TurnOutcome
from cola_gym.rewards.expressions import MAX_DIGITS, ExpressionError, parse_expression, uses_numbers_exactly
from cola_gym.rewards.extractors import answer_closed, tagged_answer

SPLIT_SEEDS = {"test": 1, "train": 0}
SPLIT_SIZES = {"test": 256, "train": 1_000_000}
_MAX_REDRAWS = 1_000


@dataclass(frozen=True)
class CountdownGrade:
    """A graded answer: ``status`` is ``"correct"``, ``"wrong_numbers"``, ``"wrong_value"``,
    ``"invalid"`` (not an allowed expression; ``detail`` says why) or ``"no_answer"``."""

    answer: str
    status: str
    value: str = ""
    detail: str = ""

    @property
    def is_correct(self) -> bool:
        return self.status == "correct"

    @property
    def well_formed(self) -> bool:
        return self.status in ("correct", "wrong_numbers", "wrong_value")


def grade_countdown(answer: str | None, numbers: Sequence[int], target: int) -> CountdownGrade:
    """Grades an answer expression (the content of ``<answer>``) against a puzzle.

    >>> grade_countdown("(3 + 5) * 2", [2, 3, 5], 16).status
    'correct'
    >>> grade_countdown("3 * 5 + 1", [2, 3, 5], 16).status
    'wrong_numbers'
    >>> grade_countdown("3!*4", [3, 4], 24).detail
    "character '!' is not allowed (only digits, + - * / and parentheses)"
    """
    if answer is None:
        return CountdownGrade("", "no_answer")
    try:
        expression = parse_expression(answer)
    except ExpressionError as err:
        return CountdownGrade(answer[:200], "invalid", detail=str(err))
    value = expression.value
    shown = str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    if not uses_numbers_exactly(expression.numbers, numbers):
        return CountdownGrade(answer, "wrong_numbers", shown)
    return CountdownGrade(answer, "correct" if value == target else "wrong_value", shown)


@dataclass(frozen=True)
class CountdownState:
    """A Countdown episode: the puzzle, and the grade once the answer is written."""

    puzzle: CountdownPuzzle
    grade: CountdownGrade | None = None


PROMPT_STYLES = ("tinyzero", "short")
DEMONSTRATION_STYLES = ("canonical", "varied", "mixed")
ANSWER_STYLES = ("think", "direct", "plain")
"""How a ``"mixed"`` demonstration is written: ``think`` (the steps in ``<think>``, then the
``<answer>``: the format the prompt asks for), ``direct`` (only the ``<answer>``, no steps:
graded the same, but the expression is composed without written steps) and ``plain``
(``expression = target`` without tags: never rewarded)."""


class CountdownTask(Task[CountdownState]):
    """Countdown puzzles with the R1/TinyZero thinking prompt.

    Args:
        level: a :class:`~cola_gym.data.countdown.CountdownLevel` or its fields as a
            mapping (``envs/countdown.toml`` declares the ladder); default: 3-4 numbers in
            1-100, targets 1-100.
        split: ``"test"`` (the fixed evaluation set: seed 1, 256 puzzles) or ``"train"``
            (seed 0, 1,000,000 puzzles, none of them in the test set).
        seed: another set of puzzles (overrides the split's seed).
        size: how many puzzles the set has (``task_index`` in ``[0, size)``).
        format_reward: reward of a well-formed but wrong answer.
        prompt_style: ``"tinyzero"`` (TinyZero's instructions, for chat models) or ``"short"``
            (``Numbers: 3 5 2. Target: 16.``: the micro tier's models, trained on this format;
            the answer format and the grading are the same).
        demonstrations: ``"canonical"`` (the solver's first solution of each puzzle),
            ``"varied"`` (one of all its positive-integer solutions, drawn per puzzle): the
            training text then shows every way a puzzle can start, so a model cloned from it
            keeps real choices at each step instead of one memorised path; or ``"mixed"``
            (varied solutions, each written in one of :data:`ANSWER_STYLES`, drawn per
            puzzle): like a base model's pretraining text, which answers in several ways, so
            a model trained on it writes the rewarded format only some of the time and RL has
            a format to settle on, as in TinyZero's Countdown.

    Reset options: ``task_index``; ``{"numbers": [...], "target": n}`` poses your own.
    ``info`` adds ``numbers``, ``target``, ``answer`` (the ``<answer>`` content), ``status``
    (see :class:`CountdownGrade`) and ``value`` (the answer's value).
    """

    info_keys: ClassVar[tuple[str, ...]] = ("numbers", "target", "answer", "status", "value")
    option_keys: ClassVar[tuple[str, ...]] = ("numbers", "target")

    def __init__(
        self,
        level: Mapping[str, Any] | CountdownLevel | None = None,
        split: str = "test",
        seed: int | None = None,
        size: int | None = None,
        format_reward: float = 0.1,
        prompt_style: str = "tinyzero",
        demonstrations: str = "canonical",
    ) -> None:
        if demonstrations not in DEMONSTRATION_STYLES:
            raise ValueError(f"demonstrations must be one of {DEMONSTRATION_STYLES}, got {demonstrations!r}")
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
        if split not in SPLIT_SEEDS:
            raise ValueError(f"split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
        if not 0.0 <= format_reward < 1.0:
            raise ValueError(f"format_reward must be in [0, 1), got {format_reward}")
        self.level = CountdownLevel.from_spec(level or {})
        self.split = split
        self.seed = SPLIT_SEEDS[split] if seed is None else int(seed)
        self.size = SPLIT_SIZES[split] if size is None else int(size)
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.format_reward = float(format_reward)
        self.prompt_style = prompt_style
        self.demonstration_style = demonstrations

    @property
    def num_tasks(self) -> int:
        return self.size

    @cached_property
    def _held_out(self) -> frozenset[tuple[tuple[int, ...], int]]:
        if self.split != "train":
            return frozenset()
        test_seed, test_size = SPLIT_SEEDS["test"], SPLIT_SIZES["test"]
        return frozenset(generate_puzzle(self.level, test_seed, i).key for i in range(test_size))

    def puzzle(self, index: int) -> CountdownPuzzle:
        """Puzzle ``index`` of this set (a train puzzle is redrawn while it is a test puzzle)."""
        for redraw in range(_MAX_REDRAWS):
            puzzle = generate_puzzle(self.level, self.seed, index, redraw)
            if puzzle.key not in self._held_out:
                return puzzle
        raise ValueError(f"every draw of train puzzle {index} is a test puzzle: the level {self.level} is too small")

    def check_options(self, options: Any) -> dict[str, Any]:
        checked = super().check_options(options)
        if "numbers" in checked or "target" in checked:
            numbers: Any = checked.get("numbers")
            target: Any = checked.get("target")
            largest = 10**MAX_DIGITS - 1
            valid = (
                isinstance(numbers, (list, tuple))
                and 2 <= len(numbers) <= 6
                and all(_is_int(n) and 0 < n <= largest for n in numbers)
                and _is_int(target)
            )
            if not valid:
                raise ValueError(
                    f"options['numbers'] must be 2-6 ints in 1..{largest:,} (an answer can only write numbers of "
                    f"up to {MAX_DIGITS} digits) and options['target'] an int"
                )
            if TASK_INDEX in checked:
                raise ValueError(f"give either options['numbers'] or options['{TASK_INDEX}'], not both")
            checked["numbers"] = tuple(int(n) for n in numbers)
            checked["target"] = int(target)
        return checked

    def begin(self, options: Mapping[str, Any], rng: np.random.Generator) -> TaskStart[CountdownState]:
        if "numbers" in options:
            puzzle = CountdownPuzzle(options["numbers"], options["target"])
        else:
            index = options.get(TASK_INDEX)
            puzzle = self.puzzle(int(rng.integers(self.size)) if index is None else index)
        return TaskStart(CountdownState(puzzle), tuple(self.prompt(puzzle)), puzzle.index)

    def prompt(self, puzzle: CountdownPuzzle) -> list[Message]:
        """The prompt messages of ``puzzle`` (TinyZero's wording, or the short style)."""
        if self.prompt_style == "short":
            numbers = " ".join(map(str, puzzle.numbers))
            return [{"role": "user", "content": f"Numbers: {numbers}. Target: {puzzle.target}."}]
        content = (
            f"Using the numbers {list(puzzle.numbers)}, create an equation that equals {puzzle.target}. "
            "You can use basic arithmetic operations (+, -, *, /) and each number must be used exactly once. "
            "Show your work in <think> </think> tags. And return the final answer in <answer> </answer> tags, "
            "for example <answer> (1 + 2) / 3 </answer>."
        )
        return [{"role": "user", "content": content}]

    def turn_complete(self, state: CountdownState, turn_text: str) -> bool:
        return answer_closed(turn_text)

    def end_turn(self, state: CountdownState, turn_text: str) -> TurnOutcome[CountdownState]:
        grade = grade_countdown(tagged_answer(turn_text), state.puzzle.numbers, state.puzzle.target)
        reward = 1.0 if grade.is_correct else self.format_reward if grade.well_formed else 0.0
        return TurnOutcome(replace(state, grade=grade), reward=reward, success=grade.is_correct)

    def info(self, state: CountdownState) -> dict[str, Any]:
        grade = state.grade or CountdownGrade("", "")
        return {
            "numbers": list(state.puzzle.numbers),
            "target": state.puzzle.target,
            "answer": grade.answer,
            "status": grade.status,
            "value": grade.value,
        }

    def describe(self, state: CountdownState) -> str:
        solution = solve(state.puzzle.numbers, state.puzzle.target)
        found = solution.expression if solution is not None else "none exists"
        return f"numbers {list(state.puzzle.numbers)}, target {state.puzzle.target}\n\na solution: {found}"

    def demonstrations(self) -> Iterable[tuple[Sequence[Message], str]]:
        """Solver-written answers in the task's format, one per puzzle of the set, in order."""
        for index in range(self.size):
            puzzle = self.puzzle(index)
            solution = solve(puzzle.numbers, puzzle.target)
            if solution is None:  # cannot happen for generated puzzles
                continue
            style = "think"
            if self.demonstration_style != "canonical":
                rng = np.random.default_rng((self.seed, index))
                choices = all_solutions(puzzle.numbers, puzzle.target) or [solution]
                solution = choices[int(rng.integers(len(choices)))]
                if self.demonstration_style == "mixed":
                    style = ANSWER_STYLES[int(rng.integers(len(ANSWER_STYLES)))]
            yield self.prompt(puzzle), solution_text(solution, style)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def solution_text(solution: Solution, style: str = "think") -> str:
    """A solver's solution written in one of :data:`ANSWER_STYLES` (default: the thinking
    format, its steps in ``<think>`` and then the answer).

    >>> from cola_gym.data.countdown import solve
    >>> print(solution_text(solve([3, 5, 2], 16)))
    <think>3 + 5 = 8. 2 * 8 = 16. That is the target.</think>
    <answer>2 * (3 + 5)</answer>
    >>> solution_text(solve([3, 5, 2], 16), "direct")
    '<answer>2 * (3 + 5)</answer>'
    >>> solution_text(solve([3, 5, 2], 16), "plain")
    '2 * (3 + 5) = 16'
    """
    if style == "think":
        steps = ". ".join(solution.steps)
        return f"<think>{steps}. That is the target.</think>\n<answer>{solution.expression}</answer>"
    if style == "direct":
        return f"<answer>{solution.expression}</answer>"
    if style == "plain":
        return f"{solution.expression} = {solution.steps[-1].rpartition(' = ')[2]}"
    raise ValueError(f"style must be one of {ANSWER_STYLES}, got {style!r}")
