"""The math grader: a table of known verdicts, hostile text, and the hard time limit."""

from __future__ import annotations

import threading
import time

import pytest

from cola_gym.rewards.verifier import MathVerifier
from cola_gym.tasks.math.grading import answer_is_complete, extract_answer, grade_text, last_boxed

# (model text, reference answer, answer format, expected correctness)
GRADES = [
    # equivalent forms
    (r"So $x = \boxed{\frac{1}{2}}$.", "0.5", "boxed", True),
    (r"\boxed{0.5}", r"\frac{1}{2}", "boxed", True),
    (r"\boxed{\dfrac{3}{4}}", r"\frac34", "boxed", True),
    (r"\boxed{50\%}", "50", "boxed", True),  # percent is a unit: 50% is 50, never 0.5 (answer_rules)
    (r"\boxed{\{1, 2\}}", r"\{2,1\}", "boxed", True),
    (r"\boxed{(x+1)(x-1)}", "x^2-1", "boxed", True),
    (r"\boxed{\sqrt{2}/2}", r"\frac{\sqrt{2}}{2}", "boxed", True),
    (r"\boxed{18.0}", "18", "boxed", True),
    (r"\boxed{x = 5}", "5", "boxed", True),
    (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)", "boxed", True),
    (r"\boxed{\text{(C)}}", r"\text{(C)}", "boxed", True),
    (r"\fbox{7}", "7", "boxed", True),
    (r"first \boxed{3}, then \boxed{3.0}", "3", "boxed", True),  # the same answer twice
    (r"our answer is $\boxed 2$.", "2", "boxed", True),
    (r"\boxed{2\sqrt{3}}", r"\sqrt{12}", "boxed", True),
    ("She pays 3 * 6 = 18 dollars.\n#### 18", "18", "gsm8k", True),
    ("Total: 1,200 apples.\n#### 1,200", "1200", "gsm8k", True),
    ("The answer is $70,000.", "70000", "gsm8k", True),
    ("5 boxes hold 12 each, so 60", "60", "gsm8k", True),
    (r"Therefore \boxed{42}.", "42", "gsm8k", True),
    ("#### -3", "-3", "gsm8k", True),
    # wrong answers
    (r"\boxed{3}", "4", "boxed", False),
    (r"\boxed{\frac{1}{3}}", "0.5", "boxed", False),
    (r"\boxed{x^2+1}", "x^2-1", "boxed", False),
    ("#### 17", "18", "gsm8k", False),
    ("The answer is 1,201.", "1200", "gsm8k", False),
    # no answer / garbage
    ("I am not sure.", "4", "boxed", False),
    ("The answer is 4", "4", "boxed", False),  # MATH needs a box
    (r"\boxed{", "4", "boxed", False),
    (r"\boxed{}", "4", "boxed", False),
    ("}}}{{{\\\\boxed{{{", "4", "boxed", False),
    ("\x00\x01\x02 \ufffd garbage", "4", "gsm8k", False),
    (r"\boxed{\frac{1}{0}}", "1", "boxed", False),
    (r"\boxed{" + "(" * 400 + "}", "1", "boxed", False),  # too long to parse
    # nested braces
    (r"\boxed{\frac{\sqrt{\frac{1}{4}}}{2}}", "0.25", "boxed", True),
    (r"\boxed{{{5}}}", "5", "boxed", True),
]


@pytest.fixture(scope="module")
def verifier() -> MathVerifier:
    checker = MathVerifier(timeout_s=5.0)
    yield checker
    checker.close()


@pytest.mark.parametrize(("text", "gold", "answer_format", "expected"), GRADES)
def test_grade_table(text: str, gold: str, answer_format: str, expected: bool, verifier: MathVerifier) -> None:
    grade = grade_text(text, gold, answer_format, verifier)  # type: ignore[arg-type]
    assert grade.is_correct is expected, grade


def test_table_is_large_enough() -> None:
    assert len(GRADES) >= 30


def test_pathological_input_hits_the_time_limit() -> None:
    verifier = MathVerifier(timeout_s=1.0)
    try:
        started = time.perf_counter()
        grade = grade_text(r"\boxed{9^{9^{9^{9}}}}", "1", "boxed", verifier)
        elapsed = time.perf_counter() - started
        assert (grade.is_correct, grade.status) == (False, "timeout")
        assert elapsed < 30  # the worker's start-up (sympy import) plus the 1 s limit
        # the verifier recovers: a new worker answers the next comparison
        assert grade_text(r"\boxed{\frac{2}{4}}", "0.5", "boxed", verifier).is_correct
    finally:
        verifier.close()


def test_grading_works_outside_the_main_thread(verifier: MathVerifier) -> None:
    results: list[bool] = []

    def grade() -> None:
        results.append(grade_text(r"\boxed{\frac{1}{2}}", r"\frac{2}{4}", "boxed", verifier).is_correct)

    threads = [threading.Thread(target=grade) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [True, True, True]


def test_extraction_of_huge_hostile_text_is_fast() -> None:
    text = ("\\boxed{" * 20_000) + ("{" * 50_000) + " 1 2 3 " * 20_000
    started = time.perf_counter()
    assert last_boxed(text) is None
    assert extract_answer(text, "gsm8k") is None  # a run of numbers states no answer
    assert not answer_is_complete(text, "boxed")
    assert time.perf_counter() - started < 5.0


def test_completion_tracks_the_answer_as_it_is_written() -> None:
    text = r"so the result is \boxed{\frac{1}{2}}"
    prefixes = [text[:i] for i in range(len(text) + 1)]
    complete = [answer_is_complete(p, "boxed") for p in prefixes]
    assert complete.index(True) == len(text) and all(complete[len(text) :])
