"""Countdown with a thinking prompt: reach a target with the given numbers.

The prompt (TinyZero's, for chat models) asks for the search written out inside
``<think>...</think>`` and the final expression inside ``<answer>...</answer>``. The episode
terminates as soon as ``</answer>`` is written (or at an end-of-sequence token). Reward:

* 1.0: the answer is an arithmetic expression that uses every given number exactly once
  and equals the target;
* ``format_reward`` (default 0.1): the answer is an arithmetic expression (only integers,
  ``+ - * /`` and parentheses: :mod:`cola_gym.tasks.countdown.expressions`) but wrong;
* 0: no ``<answer>`` tags, or their content is not such an expression (``3!``, ``2**5``,
  ``= 24``, words).

Puzzles come from :mod:`cola_gym.tasks.countdown.puzzles` by level, split and index: the test split
is a fixed evaluation set (seed 1), the train split (seed 0) never repeats a test puzzle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from cola_gym.envs.task import TASK_INDEX, TaskStart, TurnOutcome
from cola_gym.tasks.countdown.expressions import MAX_DIGITS
from cola_gym.tasks.countdown.grading import CountdownGrade, grade_countdown
from cola_gym.tasks.countdown.puzzles import (
    CountdownLevel,
    CountdownPuzzle,
    Solution,
    all_solutions,
    generate_puzzle,
    solve,
)
from cola_gym.tasks.procedural import ProceduralTask
from cola_gym.text.answers import AnswerProtocol, tagged_answer
from cola_gym.text.chat import Message

_MAX_REDRAWS = 1_000


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


TINYZERO_INSTRUCTION = (
    "You can use basic arithmetic operations (+, -, *, /) and each number must be used exactly once. "
    "Show your work in <think> </think> tags. And return the final answer in <answer> </answer> tags, "
    "for example <answer> (1 + 2) / 3 </answer>."
)
"""TinyZero's instruction, after the question ``Using the numbers [...], create an equation that equals n.``"""


class CountdownTask(ProceduralTask[CountdownState]):
    """Countdown puzzles with the R1/TinyZero thinking prompt.

    Args:
        level: a :class:`~cola_gym.tasks.countdown.puzzles.CountdownLevel` or its fields as a
            mapping (``cola_gym/tasks/countdown/spec.toml`` declares the ladder); default: 3-4 numbers in
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
    split_seeds: ClassVar[Mapping[str, int]] = {"test": 1, "train": 0}
    split_sizes: ClassVar[Mapping[str, int]] = {"test": 256, "train": 1_000_000}

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
        super().__init__(split, seed, size)
        instruction = TINYZERO_INSTRUCTION if prompt_style == "tinyzero" else ""
        self.answers = AnswerProtocol(instruction, format_reward=float(format_reward), separator=" ")
        self.level = CountdownLevel.from_spec(level or {})
        self.format_reward = self.answers.format_reward
        self.prompt_style = prompt_style
        self.demonstration_style = demonstrations

    @cached_property
    def _held_out(self) -> frozenset[tuple[tuple[int, ...], int]]:
        if self.split != "train":
            return frozenset()
        test_seed, test_size = self.split_seeds["test"], self.split_sizes["test"]
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
            question = f"Numbers: {numbers}. Target: {puzzle.target}."
        else:
            question = f"Using the numbers {list(puzzle.numbers)}, create an equation that equals {puzzle.target}."
        return [{"role": "user", "content": self.answers.pose(question)}]

    def turn_complete(self, state: CountdownState, turn_text: str) -> bool:
        return self.answers.is_complete(turn_text)

    def end_turn(self, state: CountdownState, turn_text: str) -> TurnOutcome[CountdownState]:
        grade = grade_countdown(tagged_answer(turn_text), state.puzzle.numbers, state.puzzle.target)
        reward = self.answers.reward(float(grade.is_correct), grade.well_formed)
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

    >>> from cola_gym.tasks.countdown.puzzles import solve
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
