"""What counts as a Countdown answer: the safe evaluator and the grade, pinned in a table.

Hostile inputs must score 0 quickly: never a crash, a hang or code run. The timeout marks
guard against hangs only (no speed assertion).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from cola_gym.tasks.countdown.expressions import MAX_DEPTH, ExpressionError, evaluate, parse_expression
from cola_gym.tasks.countdown.grading import grade_countdown

NUMBERS, TARGET = (25, 5, 3, 4), 15

# (answer, status) for numbers [25, 5, 3, 4], target 15
TABLE = [
    ("(25 - 5) * 3 / 4", "correct"),
    ("(25-5)*3/4", "correct"),
    ("  ( 25 - 5 ) * 3 / 4  ", "correct"),
    ("3 * (25 - 5) / 4", "correct"),
    ("((25 - 5) * 3) / 4", "correct"),
    ("-(5 - 25) * 3 / 4", "correct"),  # unary minus uses no number
    ("(25 - 5) * 3 / 4 + 0", "wrong_numbers"),  # an extra number
    ("(25 - 5) * 3", "wrong_numbers"),  # a number left out
    ("(25 - 5) * 3 / 4 / 1", "wrong_numbers"),
    ("(25 - 25) * 3 / 4", "wrong_numbers"),  # a number reused
    ("25 - 5 * 3 / 4", "wrong_value"),  # precedence matters
    ("25 + 5 + 3 + 4", "wrong_value"),
    ("25 / (5 - 5) * 3 + 4", "invalid"),  # division by zero
    ("25 / (4 - 3 - 1) + 5", "invalid"),  # division by zero before the numbers are checked
    ("(25 - 5) * 3 / 4 = 15", "invalid"),
    ("15", "wrong_numbers"),
    ("(25 - 5) * 3 // 4", "invalid"),
    ("(25 - 5) ** 3 / 4", "invalid"),
    ("9**9**9", "invalid"),
    ("(25 - 5) * 3 ^ 4", "invalid"),
    ("3! * 4", "invalid"),
    ("(25 - 5) * 3 / 4.0", "invalid"),  # decimals would smuggle digits in as numbers
    ("2.5 * 6", "invalid"),
    ("1e1 + 5", "invalid"),
    ("0x19 - 5 * 3 / 4", "invalid"),
    ("25 - 5 * (3 / 4", "invalid"),
    ("25 - 5) * 3 / 4", "invalid"),
    ("(25 5) * 3 / 4", "invalid"),
    ("(25 - 5)(3 / 4)", "invalid"),  # a call
    ("__import__('os').system('true')", "invalid"),
    ("abs(-15)", "invalid"),
    ("[25, 5, 3, 4]", "invalid"),
    ("twenty-five minus five", "invalid"),
    ("", "invalid"),
    ("   ", "invalid"),
    ("0025 - 5 * 3 / 4", "invalid"),  # leading zeros
    ("(25 - 5) * 3 / 4 + 00", "invalid"),  # 00 is not 0
    ("(" * 10_000 + "1" + ")" * 10_000, "invalid"),
    ("1+" * 500_000 + "1", "invalid"),  # 1 MB
    ("1" * 1_000_000, "invalid"),
    ("(25 - 5) * 3 / 4\x00", "invalid"),
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("answer", "status"), TABLE, ids=[f"{i}:{a[:24]}" for i, (a, _) in enumerate(TABLE)])
def test_what_counts_as_a_countdown_answer(answer: str, status: str) -> None:
    grade = grade_countdown(answer, NUMBERS, TARGET)
    assert grade.status == status, grade
    assert grade.is_correct == (status == "correct")


def test_no_answer_and_fractions() -> None:
    assert grade_countdown(None, NUMBERS, TARGET).status == "no_answer"
    grade = grade_countdown("25 / 5 / 3 / 4", NUMBERS, TARGET)
    assert (grade.status, grade.value) == ("wrong_value", "5/12")  # exact rational, shown as a fraction
    assert evaluate("1 / 3 * 3") == 1  # no floating-point rounding
    assert evaluate("(2 - 5) / 6") == Fraction(-1, 2)


@pytest.mark.timeout(10)
def test_code_in_an_answer_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for answer in (f"__import__('pathlib').Path({str(marker)!r}).touch()", f"open({str(marker)!r}, 'w')"):
        assert grade_countdown(answer, NUMBERS, TARGET).status == "invalid"
    assert not marker.exists()


def test_bounds_are_reported() -> None:
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse_expression("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    assert evaluate("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH) == 1
    with pytest.raises(ExpressionError, match="longer than"):
        parse_expression("1+" * 200 + "1")
    with pytest.raises(ExpressionError, match="more than 32 operations"):
        parse_expression("1+" * 40 + "1")
    with pytest.raises(ExpressionError, match="at most 9 digits"):
        parse_expression("1234567890 - 1")
    with pytest.raises(ExpressionError, match="division by zero"):
        parse_expression("1 / (2 - 2)")
    with pytest.raises(ExpressionError, match="expected text"):
        parse_expression(15)  # type: ignore[arg-type]
