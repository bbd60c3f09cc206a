r"""Math answers: extraction from model text, completeness, and 1/0 grading.

Answer formats:

- ``"boxed"`` (MATH): the last complete ``\boxed{...}`` (or ``\fbox{...}``).
- ``"gsm8k"``: a ``\boxed{}`` if there is one, else ``#### 42``, else "the answer is 42",
  else the last number in the text.

Model output is untrusted: extraction is a linear scan with bounded output, and the
symbolic comparison runs under a hard time limit (:mod:`cola_gym.rewards.verifier`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from cola_gym.rewards.verifier import MathVerifier, default_verifier

AnswerFormat = Literal["boxed", "gsm8k"]
ANSWER_FORMATS = ("boxed", "gsm8k")

MAX_ANSWER_CHARS = 300
"""Longer extracted answers are scored wrong without parsing."""

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
_HASH_ANSWER = re.compile(r"####\s*(" + _NUMBER + r")")
_HASH_ANSWER_DONE = re.compile(r"####\s*(" + _NUMBER + r")\.?\s")
_ANSWER_IS = re.compile(r"answer is:?\s*(" + _NUMBER + r")", re.IGNORECASE)
_ANY_NUMBER = re.compile(_NUMBER)
_SIMPLE_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def _brace_group(text: str, start: int) -> str | None:
    """Content of the ``{...}`` group opening at ``text[start]``, or ``None`` if unclosed."""
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # an escaped character such as \{ never opens or closes a group
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def _matching_braces(text: str) -> dict[int, int]:
    """Index of every ``{`` that gets closed -> index of its ``}``, in one pass."""
    openings: list[int] = []
    pairs: dict[int, int] = {}
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            openings.append(i)
        elif char == "}" and openings:
            pairs[openings.pop()] = i
        i += 1
    return pairs


def _last_box_start(text: str, end: int) -> tuple[int, int] | None:
    """(start of command, index after it) of the last box command before ``end``."""
    best = max((text.rfind(cmd, 0, end), cmd) for cmd in _BOX_COMMANDS)
    if best[0] < 0:
        return None
    return best[0], best[0] + len(best[1])


def _boxed_at(text: str, after: int, text_is_final: bool) -> str | None:
    """Content of the box whose command ends at ``after``: ``{...}`` or the ``\\boxed 2`` form."""
    i = after
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] == "{":
        return _brace_group(text, i)
    if i == after or i == len(text):
        return None
    end = i
    while end < len(text) and not text[end].isspace() and text[end] != "$":
        end += 1
    if end == len(text) and not text_is_final:
        return None  # the bare token may still grow
    return text[i:end].rstrip(".,") or None


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` (or ``\fbox{...}``) in ``text``.

    >>> last_boxed(r"so $x = \boxed{\frac{1}{2}}$.")
    '\\frac{1}{2}'
    >>> last_boxed(r"\boxed{\{1, 2\}}")
    '\\{1, 2\\}'
    >>> last_boxed(r"\boxed{3} then \boxed{4") is None, last_boxed(r"\boxed{3} then \boxed{4")
    (False, '3')
    >>> last_boxed("no box") is None, last_boxed(r"our answer is $\boxed 2$.")
    (True, '2')
    """
    starts = sorted((i, i + len(cmd)) for cmd in _BOX_COMMANDS for i in _find_all(text, cmd))
    if not starts:
        return None
    pairs = None
    for _, after in reversed(starts):
        i = after
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            pairs = _matching_braces(text) if pairs is None else pairs
            if i in pairs:
                return text[i + 1 : pairs[i]]
        else:
            content = _boxed_at(text, after, text_is_final=True)
            if content is not None:
                return content
    return None


def _find_all(text: str, needle: str) -> list[int]:
    found, i = [], text.find(needle)
    while i >= 0:
        found.append(i)
        i = text.find(needle, i + 1)
    return found


def boxed_is_complete(text: str) -> bool:
    r"""Whether the last box command in ``text`` has its closing brace.

    >>> boxed_is_complete(r"\boxed{2}"), boxed_is_complete(r"\boxed{\frac{1}{2}"), boxed_is_complete("x")
    (True, False, False)
    >>> boxed_is_complete(r"\boxed 12"), boxed_is_complete(r"\boxed 12$")
    (False, True)
    """
    found = _last_box_start(text, len(text))
    return found is not None and _boxed_at(text, found[1], text_is_final=False) is not None


def _clean_number(number: str) -> str:
    return number.replace("$", "").replace(",", "").rstrip(".")


def extract_answer(text: str, answer_format: AnswerFormat) -> str | None:
    """The final answer written in ``text``, or ``None``.

    >>> extract_answer("She has 3 + 4 = 7 apples.\\n#### 7", "gsm8k")
    '7'
    >>> extract_answer("So the answer is $1,200.", "gsm8k")
    '1200'
    >>> extract_answer("5 boxes of 12 make 60", "gsm8k")
    '60'
    >>> extract_answer(r"Thus \\boxed{60}.", "gsm8k"), extract_answer("60", "boxed")
    ('60', None)
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    boxed = last_boxed(text)
    if boxed is not None or answer_format == "boxed":
        return None if boxed is None else boxed.strip()
    for pattern in (_HASH_ANSWER, _ANSWER_IS):
        matches = pattern.findall(text)
        if matches:
            return _clean_number(matches[-1])
    numbers = _ANY_NUMBER.findall(text)
    return _clean_number(numbers[-1]) if numbers else None


def answer_is_complete(text: str, answer_format: AnswerFormat) -> bool:
    """Whether ``text`` already holds a finished final answer (generation can stop).

    >>> answer_is_complete(r"so \\boxed{12}", "boxed"), answer_is_complete("#### 12", "gsm8k")
    (True, False)
    >>> answer_is_complete("#### 12\\n", "gsm8k"), answer_is_complete("#### 12.\\n", "gsm8k")
    (True, True)
    """
    if boxed_is_complete(text):
        return True
    return answer_format == "gsm8k" and _HASH_ANSWER_DONE.search(text) is not None


def gold_answer(solution_or_answer: str, answer_format: AnswerFormat) -> str | None:
    r"""The reference answer from a data set field: a MATH solution or a GSM8K answer.

    >>> gold_answer(r"... so $\boxed{\dfrac{3}{4}}$.", "boxed")
    '\\dfrac{3}{4}'
    >>> gold_answer("3 + 4 = 7\n#### 1,007", "gsm8k")
    '1007'
    """
    if answer_format == "gsm8k" and "####" in solution_or_answer:
        return _clean_number(solution_or_answer.rsplit("####", 1)[1].strip())
    boxed = last_boxed(solution_or_answer)
    return boxed.strip() if boxed is not None else None


def _as_number(answer: str) -> Fraction | None:
    text = _clean_number(answer.strip().strip("$").strip())
    if not _SIMPLE_NUMBER.fullmatch(text):
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


@dataclass(frozen=True)
class MathGrade:
    """A graded answer.

    Attributes:
        answer: the extracted answer (``None`` when the text has none).
        is_correct: whether it equals the reference.
        status: ``"ok"``, ``"no_answer"``, ``"too_long"``, ``"timeout"`` or ``"error"``.
    """

    answer: str | None
    is_correct: bool
    status: str


def answers_match(predicted: str, gold: str, verifier: MathVerifier | None = None) -> MathGrade:
    """Compares two answers: exact or numeric match first, then math-verify (time-limited).

    >>> answers_match("1,000", "1000").is_correct, answers_match("0.5", "1/2").is_correct
    (True, True)
    >>> answers_match("7", "8").is_correct
    False
    """
    if len(predicted) > MAX_ANSWER_CHARS:
        return MathGrade(predicted[:MAX_ANSWER_CHARS], False, "too_long")
    if predicted.replace(" ", "") == gold.replace(" ", ""):
        return MathGrade(predicted, True, "ok")
    numbers = _as_number(predicted), _as_number(gold)
    if numbers[0] is not None and numbers[1] is not None:
        return MathGrade(predicted, numbers[0] == numbers[1], "ok")
    verdict = (verifier or default_verifier()).compare(gold, predicted)
    return MathGrade(predicted, verdict.equal, verdict.status)


def grade_text(text: str, gold: str, answer_format: AnswerFormat, verifier: MathVerifier | None = None) -> MathGrade:
    """Extracts the answer from model ``text`` and grades it against ``gold`` (1/0 reward).

    >>> grade_text("... #### 18", "18", "gsm8k").is_correct
    True
    >>> grade_text("I don't know", "18", "boxed")
    MathGrade(answer=None, is_correct=False, status='no_answer')
    """
    answer = extract_answer(text, answer_format)
    if answer is None or not answer:
        return MathGrade(None, False, "no_answer")
    return answers_match(answer, gold, verifier)
