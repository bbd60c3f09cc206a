r"""Procedural arithmetic word problems with exact answers: the micro math tier.

A problem is a story about one quantity that changes through a chain of operations::

    Mia has 7 apples. She gets 5 more apples. She splits them into 3 equal groups and keeps
    one group. How many apples does Mia have now?

Every intermediate value is a positive integer no larger than the level's ``max_value``
(divisions are exact), so the answer is one integer. Levels (:class:`WordProblemLevel`)
set the number of operations, the operators and the size of the numbers; the test split is a
fixed evaluation set and the train split never repeats a test problem.

Worked solutions come in :data:`ANSWER_STYLES`, written as a model's pretraining text would
answer: the steps then a boxed answer, a boxed answer alone, or the steps then GSM8K's
``#### n`` line, which an env that asks for ``\boxed{}`` does not reward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cola_gym.tasks.procedural import level_from_spec

OPERATORS = ("+", "-", "*", "/")
ANSWER_STYLES = ("steps", "direct", "gsm8k")
"""How a worked solution is written: ``steps`` (one line of arithmetic per operation, then
``The final answer is $\boxed{n}$.``), ``direct`` (only that last sentence) and ``gsm8k``
(the steps, then ``#### n``)."""

NAMES = (("Mia", "She", "she"), ("Leo", "He", "he"), ("Ana", "She", "she"), ("Sam", "He", "he"),
         ("Zoe", "She", "she"), ("Max", "He", "he"), ("Eva", "She", "she"), ("Tom", "He", "he"))  # fmt: skip
ITEMS = ("apples", "books", "coins", "cards", "shells", "stamps", "marbles", "pencils", "stickers", "cookies")
_ATTEMPTS = 1_000


@dataclass(frozen=True)
class WordProblemLevel:
    """A difficulty level (the ``[levels.*]`` tables of ``cola_gym/tasks/math/spec.toml``).

    Attributes:
        min_operations, max_operations: operations in the chain.
        operators: which of ``+ - * /`` may appear.
        max_start: the largest starting quantity (at least 2).
        max_operand: the largest number an operation uses (multipliers and divisors at most 9).
        max_value: the largest value any step may reach.
    """

    min_operations: int = 1
    max_operations: int = 1
    operators: tuple[str, ...] = ("+", "-")
    max_start: int = 20
    max_operand: int = 10
    max_value: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.min_operations <= self.max_operations <= 8:
            raise ValueError(f"operations must satisfy 1 <= min_operations <= max_operations <= 8, got {self}")
        if not self.operators or any(op not in OPERATORS for op in self.operators):
            raise ValueError(f"operators must be some of {OPERATORS}, got {self.operators!r}")
        if self.max_start < 2 or self.max_operand < 2 or self.max_value < self.max_start:
            raise ValueError(f"need max_start >= 2, max_operand >= 2 and max_value >= max_start, got {self}")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | WordProblemLevel) -> WordProblemLevel:
        """A level from a TOML table (unknown keys are an error)."""
        return level_from_spec(cls, spec, "word-problem")


@dataclass(frozen=True)
class Step:
    """One operation: ``before operator operand = after``."""

    operator: str
    operand: int
    before: int
    after: int

    def arithmetic(self) -> str:
        return f"{self.before} {self.operator} {self.operand} = {self.after}."


@dataclass(frozen=True)
class WordProblem:
    """One problem: its text, its integer answer, and the steps that reach it."""

    text: str
    answer: int
    start: int
    steps: tuple[Step, ...]
    index: int = -1

    @property
    def key(self) -> tuple[int, tuple[tuple[str, int], ...]]:
        """What makes two problems the same arithmetic (names and objects aside)."""
        return self.start, tuple((s.operator, s.operand) for s in self.steps)


def generate_problem(level: WordProblemLevel, seed: int, index: int, redraw: int = 0) -> WordProblem:
    """Problem ``index`` of ``level`` under ``seed`` (``redraw`` > 0: another one for the same index)."""
    rng = np.random.default_rng([seed, index, redraw])
    count = int(rng.integers(level.min_operations, level.max_operations + 1))
    for _ in range(_ATTEMPTS):
        start = int(rng.integers(2, level.max_start + 1))
        steps = _chain(level, start, count, rng)
        if steps is not None:
            name, pronoun, _ = NAMES[int(rng.integers(len(NAMES)))]
            items = ITEMS[int(rng.integers(len(ITEMS)))]
            sentences = [f"{name} has {start} {items}."]
            sentences += [_sentence(step, pronoun, items) for step in steps]
            sentences.append(f"How many {items} does {name} have now?")
            return WordProblem(" ".join(sentences), steps[-1].after, start, tuple(steps), index)
    raise ValueError(f"no problem found for {level} in {_ATTEMPTS} attempts; raise max_value")


def _chain(level: WordProblemLevel, value: int, count: int, rng: np.random.Generator) -> list[Step] | None:
    """``count`` operations from ``value`` that stay in the positive integers up to ``max_value``."""
    steps = []
    for _ in range(count):
        operator = level.operators[int(rng.integers(len(level.operators)))]
        small = min(level.max_operand, 9)
        if operator == "+":
            operand = int(rng.integers(1, level.max_operand + 1))
        elif operator == "-":
            if value < 2:
                return None
            operand = int(rng.integers(1, min(value - 1, level.max_operand) + 1))
        elif operator == "*":
            operand = int(rng.integers(2, small + 1))
        else:
            divisors = [d for d in range(2, small + 1) if value % d == 0]
            if not divisors:
                return None
            operand = divisors[int(rng.integers(len(divisors)))]
        after = {"+": value + operand, "-": value - operand, "*": value * operand}.get(operator, value // operand)
        if after > level.max_value:
            return None
        steps.append(Step(operator, operand, value, after))
        value = after
    return steps


def _sentence(step: Step, pronoun: str, items: str) -> str:
    if step.operator == "+":
        return f"{pronoun} gets {step.operand} more {items}."
    if step.operator == "-":
        return f"{pronoun} gives away {step.operand} {items}."
    if step.operator == "*":
        return f"Then the number of {items} becomes {step.operand} times as large."
    return f"{pronoun} splits them into {step.operand} equal groups and keeps one group."


def solution_text(problem: WordProblem, style: str = "steps") -> str:
    r"""``problem``'s worked solution in one of :data:`ANSWER_STYLES`.

    >>> problem = WordProblem("...", 4, 7, (Step("+", 5, 7, 12), Step("/", 3, 12, 4)))
    >>> print(solution_text(problem))
    7 + 5 = 12. 12 / 3 = 4. The final answer is $\boxed{4}$.
    >>> solution_text(problem, "direct"), solution_text(problem, "gsm8k")
    ('The final answer is $\\boxed{4}$.', '7 + 5 = 12. 12 / 3 = 4.\n#### 4')
    """
    steps = " ".join(step.arithmetic() for step in problem.steps)
    if style == "steps":
        return f"{steps} The final answer is $\\boxed{{{problem.answer}}}$."
    if style == "direct":
        return f"The final answer is $\\boxed{{{problem.answer}}}$."
    if style == "gsm8k":
        return f"{steps}\n#### {problem.answer}"
    raise ValueError(f"style must be one of {ANSWER_STYLES}, got {style!r}")


def held_out_keys(level: WordProblemLevel, seed: int, size: int) -> frozenset[Any]:
    """The keys of a set's problems (the train split redraws any of the test split's)."""
    return frozenset(generate_problem(level, seed, index).key for index in range(size))


def styles_of(seed: int, indices: Sequence[int]) -> list[str]:
    """The answer style a ``mixed`` demonstration of each problem index is written in."""
    return [ANSWER_STYLES[int(np.random.default_rng([seed, index, 7]).integers(len(ANSWER_STYLES)))]
            for index in indices]  # fmt: skip
