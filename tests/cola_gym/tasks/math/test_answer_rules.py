r"""What the grader pays for: exploit attempts an RL agent would find, scored as a careful
human grader would, and GSM8K numbers read whole and compared by value."""

from __future__ import annotations

import pytest

from cola_gym.rewards.verifier import MathVerifier
from cola_gym.tasks.math.grading import extract_answer, grade_text

# (model text, reference, answer format, paid?, why)
EXPLOITS = [
    (r"\boxed{1=2}", "2", "boxed", False, "a false equation whose last side is the reference"),
    (r"\boxed{5 = 5}", "5", "boxed", False, "an equation, not an answer"),
    (r"\boxed{x = 1 = 2}", "2", "boxed", False, "a chain of equations"),
    (r"\boxed{x = 2 = 2}", "2", "boxed", False, "a chain of equations, even a true one"),
    (r"\boxed{x = 1 \text{ or } 2}", "2", "boxed", False, "x = 1 or 2"),
    (r"\boxed{1 \text{ or } 2}", "1", "boxed", False, "a hedge"),
    (r"\boxed{5 \vee 6}", "6", "boxed", False, "a logical or (math-verify reads its last side)"),
    (r"\boxed{5 \lor 6}", "5", "boxed", False, "a logical or"),
    (r"\boxed{\pm 5}", "5", "boxed", False, "plus or minus"),
    (r"\boxed{1, 2, 3}", "2", "boxed", False, "a list that contains the reference"),
    (r"\boxed{2, 2}", "2", "boxed", False, "a list, even of the reference"),
    (r"\boxed{\{1, 2, 3\}}", "2", "boxed", False, "a set that contains the reference"),
    (r"\boxed{\{2\}}", "2", "boxed", False, "a set, not a number"),
    (r"\boxed{x \in \{1, 2\}}", "2", "boxed", False, "membership in a set"),
    (r"\boxed{2 \approx 3}", "2", "boxed", False, "an approximation"),
    (r"\boxed{\approx 5}", "5", "boxed", False, "an approximation"),
    (r"\boxed{x > 5}", "5", "boxed", False, "an inequality"),
    (r"\boxed{1 \le 5}", "5", "boxed", False, "an inequality"),
    (r"\boxed{2\%}", r"\frac{1}{50}", "boxed", False, "2% is 2 percent, not the number 0.02"),
    (r"\boxed{2\%}", "0.02", "boxed", False, "2% is 2 percent, not the number 0.02"),
    (r"\boxed{0.02}", r"2\%", "boxed", False, "and 0.02 is not 2 percent"),
    (r"\boxed{25}", "5", "boxed", False, "the reference's digits inside another number"),
    (r"\boxed{5x}", "5", "boxed", False, "the reference inside a longer expression"),
    (r"\boxed{\text{5 apples and 7 oranges}}", "5", "boxed", False, "the reference inside text"),
    (r"\boxed{5 \text{ and } 6}", "5", "boxed", False, "two answers"),
    (r"\boxed{3} \boxed{4}", "4", "boxed", False, "several boxed answers"),
    (r"\boxed{4} or maybe \boxed{3}", "4", "boxed", False, "several boxed answers"),
    ("#### 17\n#### 18\n", "18", "gsm8k", False, "several final answers"),
    ("The answer is 17. No, the answer is 18.", "18", "gsm8k", False, "several final answers"),
    ("Tom has 12 apples and 18 pears.", "18", "gsm8k", False, "the problem's numbers repeated"),
    ("12 18 30 42 7 18", "18", "gsm8k", False, "a run of numbers"),
    ("1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18", "18", "gsm8k", False, "counting up"),
    ("A: 1/18", "18", "gsm8k", False, "a fraction is not its denominator"),
    # what a careful human still pays for
    (r"\boxed{x = 5}", "5", "boxed", True, "the variable named once"),
    (r"\boxed{x_1 = 5}", "5", "boxed", True, "a subscripted variable named once"),
    (r"\boxed{2\%}", "2", "boxed", True, "percent as a unit"),
    (r"\boxed{\frac{10}{2}}", "5", "boxed", True, "an unsimplified value"),
    (r"\boxed{y = 2x + 3}", "y = 2x + 3", "boxed", True, "a reference that is an equation"),
    (r"\boxed{1 \pm \sqrt{19}}", r"1 \pm \sqrt{19}", "boxed", True, "a reference with plus or minus"),
    (r"\boxed{-2, 1}", "1,-2", "boxed", True, "a reference that is a list, in another order"),
    (r"\boxed{10080}", r"10,\!080", "boxed", True, "thousands separators"),
    ("She has 5 apples and eats 2, so she has 3 left.", "3", "gsm8k", True, "a stated result"),
    ("5 - 2 = 3 apples are left.", "3", "gsm8k", True, "the right side of the last equation"),
    ("The answer is 18. So the answer is 18.", "18", "gsm8k", True, "one answer given twice"),
]


@pytest.fixture(scope="module")
def verifier() -> MathVerifier:
    checker = MathVerifier(timeout_s=5.0)
    yield checker
    checker.close()


@pytest.mark.parametrize(("text", "gold", "answer_format", "paid", "why"), EXPLOITS)
def test_what_the_grader_pays_for(
    text: str, gold: str, answer_format: str, paid: bool, why: str, verifier: MathVerifier
) -> None:
    grade = grade_text(text, gold, answer_format, verifier)  # type: ignore[arg-type]
    assert grade.is_correct is paid, f"{why}: {grade}"


def test_the_exploit_table_is_large_enough() -> None:
    assert sum(not paid for *_, paid, _ in EXPLOITS) >= 20


# (text, reference, extracted answer, paid?)
GSM8K_NUMBERS = [
    ("A: 1/18", "18", "1/18", False),
    ("A: 1/18", "1/18", "1/18", True),
    ("#### 1/2\n", "1", "1/2", False),
    ("#### 1/2\n", "0.5", "1/2", True),
    ("A: 3/4", "4", "3/4", False),
    ("A: 3/4", "0.75", "3/4", True),
    ("#### 1e9\n", "1", "1e9", False),
    ("#### 1e9\n", "1000000000", "1e9", True),
    ("#### 1,000,000,000\n", "1e9", "1000000000", True),
    ("The answer is 2.5E-3.", "0.0025", "2.5E-3", True),
    ("The answer is -1,234.50.", "-1234.5", "-1234.50", True),
    ("The answer is +7.", "7", "7", True),
    ("So the total is $1,200.", "1200", "1200", True),
    ("#### 12,34\n", "1234", "12", False),  # not a thousands separator: two numbers
    ("#### 1/0\n", "0", "1/0", False),
    ("#### 1e99999\n", "1", "1e99999", False),
]


@pytest.mark.parametrize(("text", "gold", "answer", "paid"), GSM8K_NUMBERS)
def test_gsm8k_numbers_are_read_whole(text: str, gold: str, answer: str, paid: bool, verifier: MathVerifier) -> None:
    assert extract_answer(text, "gsm8k") == answer
    assert grade_text(text, gold, "gsm8k", verifier).is_correct is paid
