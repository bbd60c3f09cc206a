"""Countdown puzzles: seeded generation by difficulty level, and an exact solver.

A puzzle gives a few numbers and a target; an answer is an arithmetic expression that uses
every given number exactly once with ``+ - * /`` and equals the target (checked exactly by
:mod:`cola_gym.tasks.countdown.expressions`). Puzzles are generated backwards (numbers first, then
a random combination of all of them whose intermediate results are positive integers), so
every puzzle has a solution; :func:`solve` finds one by exhaustive search.

Puzzle ``i`` of a level and seed depends on nothing else (not on the order of access), so
evaluation sets are fixed by ``(level, seed, size)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np

from cola_gym.tasks.procedural import level_from_spec

OPERATORS = ("+", "-", "*", "/")

_ATTEMPTS = 1_000


@dataclass(frozen=True)
class CountdownLevel:
    """A difficulty level: how many numbers, their range, the operators and the target range.

    Attributes:
        min_numbers / max_numbers: how many numbers a puzzle gives (each used exactly once).
        min_value / max_value: range of the given numbers.
        operators: operators of the generating expression (answers may use all four).
        min_target / max_target: range of the target.
    """

    min_numbers: int = 3
    max_numbers: int = 4
    min_value: int = 1
    max_value: int = 100
    operators: tuple[str, ...] = OPERATORS
    min_target: int = 1
    max_target: int = 100

    def __post_init__(self) -> None:
        if not 2 <= self.min_numbers <= self.max_numbers <= 6:
            raise ValueError(f"need 2 <= min_numbers <= max_numbers <= 6, got {self.min_numbers}, {self.max_numbers}")
        if not 1 <= self.min_value <= self.max_value:
            raise ValueError(f"need 1 <= min_value <= max_value, got {self.min_value}, {self.max_value}")
        if not 1 <= self.min_target <= self.max_target:
            raise ValueError(f"need 1 <= min_target <= max_target, got {self.min_target}, {self.max_target}")
        if not self.operators or not set(self.operators) <= set(OPERATORS):
            raise ValueError(f"operators must be a non-empty subset of {OPERATORS}, got {self.operators}")
        object.__setattr__(self, "operators", tuple(self.operators))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | CountdownLevel) -> CountdownLevel:
        """A level from a TOML table (unknown keys are an error)."""
        return level_from_spec(cls, spec, "Countdown")


@dataclass(frozen=True)
class CountdownPuzzle:
    """One puzzle: ``numbers`` (in the order shown) and ``target``; ``index`` in its set."""

    numbers: tuple[int, ...]
    target: int
    index: int = -1
    key: tuple[tuple[int, ...], int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (tuple(sorted(self.numbers)), self.target))


def generate_puzzle(level: CountdownLevel, seed: int, index: int, redraw: int = 0) -> CountdownPuzzle:
    """Puzzle ``index`` of ``level`` under ``seed``, solvable by construction.

    ``redraw`` > 0 draws another puzzle for the same index (used to skip held-out ones).
    """
    rng = np.random.default_rng([seed, index, redraw])
    for attempt in itertools.count():
        count = int(rng.integers(level.min_numbers, level.max_numbers + 1))
        numbers = [int(n) for n in rng.integers(level.min_value, level.max_value + 1, size=count)]
        target = _random_combination(numbers, level.operators, rng)
        if target is not None and level.min_target <= target <= level.max_target:
            return CountdownPuzzle(tuple(numbers), target, index)
        if attempt >= _ATTEMPTS:
            raise ValueError(f"no puzzle found for {level} in {_ATTEMPTS} attempts; widen the target range")
    raise AssertionError("unreachable")


def _random_combination(numbers: Sequence[int], operators: Sequence[str], rng: np.random.Generator) -> int | None:
    """Combines all ``numbers`` in a random order and tree; ``None`` when a step leaves the
    positive integers (Countdown's classic rule, which keeps targets natural)."""
    values = list(numbers)
    while len(values) > 1:
        i, j = (int(k) for k in rng.choice(len(values), size=2, replace=False))
        a, b = values[i], values[j]
        result = _apply(operators[int(rng.integers(len(operators)))], Fraction(a), Fraction(b))
        if result is None or result.denominator != 1 or result <= 0:
            return None
        values = [v for k, v in enumerate(values) if k not in (i, j)] + [int(result)]
    return values[0]


def _apply(operator: str, a: Fraction, b: Fraction) -> Fraction | None:
    if operator == "+":
        return a + b
    if operator == "-":
        return a - b
    if operator == "*":
        return a * b
    return a / b if b != 0 else None


@dataclass(frozen=True)
class Solution:
    """A solution: the ``expression`` text and its ``steps`` (``"8 * 3 = 24"``, ...)."""

    expression: str
    steps: tuple[str, ...]


def solve(numbers: Sequence[int], target: int, operators: Sequence[str] = OPERATORS) -> Solution | None:
    """An expression using every number exactly once that equals ``target``, or ``None``.

    Exhaustive over pairwise combinations with exact rationals, so ``None`` means there is
    none. Solutions whose every step stays in the positive integers are preferred (they
    read the way people write Countdown); the expression has only the parentheses it needs.

    >>> solve([3, 5, 2], 16).expression
    '2 * (3 + 5)'
    >>> solve([3, 5, 2], 16).steps
    ('3 + 5 = 8', '2 * 8 = 16')
    >>> solve([1, 1], 5) is None
    True
    """
    key = (tuple(sorted(numbers)), Fraction(target), tuple(operators))
    return _solve(*key, natural=True) or _solve(*key, natural=False)


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_Item = tuple[Fraction, str, int]  # value, text, precedence of its outermost operator (3: a number)


@lru_cache(maxsize=4096)
def _solve(numbers: tuple[int, ...], target: Fraction, operators: tuple[str, ...], natural: bool) -> Solution | None:
    start: list[_Item] = [(Fraction(n), str(n), 3) for n in numbers]
    return next(_solutions(start, target, operators, (), natural), None)


def all_solutions(
    numbers: Sequence[int], target: int, operators: Sequence[str] = OPERATORS, limit: int = 256
) -> list[Solution]:
    """Up to ``limit`` distinct solutions whose steps stay in the positive integers, in search order.

    >>> [s.expression for s in all_solutions([10, 12, 17], 39)]
    ['17 + 10 + 12', '12 + 10 + 17', '10 + 12 + 17']
    """
    start: list[_Item] = [(Fraction(n), str(n), 3) for n in sorted(numbers)]
    found: dict[str, Solution] = {}
    for solution in _solutions(start, Fraction(target), tuple(operators), (), natural=True):
        found.setdefault(solution.expression, solution)
        if len(found) >= limit:
            break
    return list(found.values())


def _solutions(
    items: list[_Item], target: Fraction, operators: tuple[str, ...], steps: tuple[str, ...], natural: bool
) -> Iterator[Solution]:
    if len(items) == 1:
        if items[0][0] == target:
            yield Solution(items[0][1], steps)
        return
    for i, j in itertools.permutations(range(len(items)), 2):
        a, b = items[i], items[j]
        rest = [item for k, item in enumerate(items) if k not in (i, j)]
        for operator in operators:
            if operator in "+*" and i > j:
                continue  # commutative: each pair once
            value = _apply(operator, a[0], b[0])
            if value is None or (natural and (value <= 0 or value.denominator != 1)):
                continue
            step = f"{_number(a[0])} {operator} {_number(b[0])} = {_number(value)}"
            combined = (value, _join(a, operator, b), _PRECEDENCE[operator])
            yield from _solutions([*rest, combined], target, operators, (*steps, step), natural)


def _join(left: _Item, operator: str, right: _Item) -> str:
    precedence = _PRECEDENCE[operator]
    left_text = f"({left[1]})" if left[2] < precedence else left[1]
    right_needs = right[2] < precedence or (right[2] == precedence and operator in "-/")
    right_text = f"({right[1]})" if right_needs else right[1]
    return f"{left_text} {operator} {right_text}"


def _number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
