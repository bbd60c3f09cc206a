"""Grading a Countdown answer: an allowed expression that uses every number once and hits the target.

The expression language (only integers, ``+ - * /`` and parentheses) is
:mod:`cola_gym.tasks.countdown.expressions`; reasoning-gym's ``countdown`` and ``puzzle24``
data sets are graded here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cola_gym.tasks.countdown.expressions import ExpressionError, parse_expression, uses_numbers_exactly


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
