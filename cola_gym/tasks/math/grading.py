r"""Math answers: extraction from model text, completeness, and 1/0 grading.

Answer formats:

- ``"boxed"`` (MATH): the last complete ``\boxed{...}`` (or ``\fbox{...}``).
- ``"gsm8k"``: a ``\boxed{}`` if there is one, else ``#### 42``, else "the answer is 42",
  else the number that ends the text: the only number of the last sentence that has
  numbers, or the only
  one after its last ``=``, "so", "thus", "therefore", "hence", "total", "makes", "gives",
  "equals", "is" or "are" (a sentence that just lists numbers states no answer).

Numbers are read whole (``1/18``, ``-1,234.5``, ``1e9``; :mod:`cola_gym.text.numbers`)
and compared by value. An answer given several times in different ways (``\boxed{3}`` ...
``\boxed{4}``) is a hedge and scores 0 (status ``"ambiguous"``); what counts as one answer
is in :mod:`cola_gym.tasks.math.answer_rules`.

Model output is untrusted: extraction is a linear scan with bounded output, and the
symbolic comparison runs under a hard time limit (:mod:`cola_gym.rewards.verifier`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from cola_gym.rewards.verifier import MathVerifier, default_verifier
from cola_gym.tasks.math.answer_rules import screen_answer
from cola_gym.text.numbers import NUMBER, clean_number, find_numbers, parse_number

AnswerFormat = Literal["boxed", "gsm8k"]
ANSWER_FORMATS = ("boxed", "gsm8k")

MAX_ANSWER_CHARS = 300
"""Longer extracted answers are scored wrong without parsing."""

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_HASH_ANSWER = re.compile(r"####\s*(" + NUMBER + r")")
_HASH_ANSWER_DONE = re.compile(r"####\s*(" + NUMBER + r")\.?\s")
_ANSWER_IS = re.compile(r"answer is:?\s*(" + NUMBER + r")", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?;](?:\s|$)|\n")
_CONCLUSION = re.compile(
    r"=|\b(?:so|thus|therefore|hence|total|makes?|gives?|equals?|is|are|was|were)\b", re.IGNORECASE
)


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


def all_boxed(text: str) -> list[str]:
    r"""Contents of every complete ``\boxed{...}`` (or ``\fbox``) in ``text``, in order.

    >>> all_boxed(r"\boxed{3} then \boxed{\frac{1}{2}} and \boxed{4")
    ['3', '\\frac{1}{2}']
    """
    starts = sorted((i, i + len(cmd)) for cmd in _BOX_COMMANDS for i in _find_all(text, cmd))
    pairs = _matching_braces(text) if starts else {}
    contents = []
    for _, after in starts:
        i = after
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            if i in pairs:
                contents.append(text[i + 1 : pairs[i]])
        else:
            content = _boxed_at(text, after, text_is_final=True)
            if content is not None:
                contents.append(content)
    return contents


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


def _last_stated_number(text: str) -> str | None:
    """The number that ends ``text`` as an answer (module docstring), or ``None``."""
    body = text.rstrip().rstrip(".!?;")
    starts = [0, *(m.end() for m in _SENTENCE_END.finditer(body))]
    numbers: list[str] = []
    for start, end in zip(reversed(starts), [len(body), *reversed(starts[1:])], strict=True):
        sentence = body[start:end]
        numbers = find_numbers(sentence)
        if numbers:  # the last sentence that has a number ("... so 60. Hope this helps!")
            break
    for conclusion in reversed(list(_CONCLUSION.finditer(sentence))):
        stated = find_numbers(sentence[conclusion.end() :])
        if stated:  # the numbers after the last conclusion that is followed by any
            numbers = stated
            break
    return clean_number(numbers[0]) if len(numbers) == 1 else None


def _candidates(text: str, answer_format: AnswerFormat) -> list[str]:
    """Every final answer the text states in its strongest form (boxes, then ``####``, ...)."""
    boxes = [b.strip() for b in all_boxed(text)]
    if boxes or answer_format == "boxed":
        return boxes
    for pattern in (_HASH_ANSWER, _ANSWER_IS):
        matches = pattern.findall(text)
        if matches:
            return [clean_number(m) for m in matches]
    number = _last_stated_number(text)
    return [number] if number is not None else []


def _same_answer(first: str, second: str) -> bool:
    values = parse_number(first), parse_number(second)
    if values[0] is not None and values[1] is not None:
        return values[0] == values[1]
    return first.replace(" ", "") == second.replace(" ", "")


def extract_answer(text: str, answer_format: AnswerFormat) -> str | None:
    """The final answer written in ``text``, or ``None`` (none, or several that differ).

    >>> extract_answer("She has 3 + 4 = 7 apples.\\n#### 7", "gsm8k")
    '7'
    >>> extract_answer("So the answer is $1,200.", "gsm8k"), extract_answer("A: 1/18", "gsm8k")
    ('1200', '1/18')
    >>> extract_answer("5 boxes of 12 make 60", "gsm8k"), extract_answer("12 apples and 18 pears.", "gsm8k")
    ('60', None)
    >>> extract_answer("So she pays 60 dollars. Hope this helps!", "gsm8k")
    '60'
    >>> extract_answer(r"Thus \\boxed{60}.", "gsm8k"), extract_answer("60", "boxed")
    ('60', None)
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    candidates = _candidates(text, answer_format)
    if not candidates or any(not _same_answer(c, candidates[-1]) for c in candidates):
        return None
    return candidates[-1]


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
        return clean_number(solution_or_answer.rsplit("####", 1)[1].strip())
    boxed = last_boxed(solution_or_answer)
    return boxed.strip() if boxed is not None else None


@dataclass(frozen=True)
class MathGrade:
    """A graded answer.

    Attributes:
        answer: the extracted answer (``None`` when the text has none).
        is_correct: whether it equals the reference.
        status: ``"ok"``, ``"no_answer"``, ``"ambiguous"`` (several different final answers),
            ``"too_long"``, ``"refused"`` (not one answer: :mod:`~cola_gym.tasks.math.answer_rules`),
            ``"timeout"`` or ``"error"``.
    """

    answer: str | None
    is_correct: bool
    status: str


def answers_match(predicted: str, gold: str, verifier: MathVerifier | None = None) -> MathGrade:
    """Compares two answers: the answer rules, exact or numeric match, then math-verify (time-limited).

    >>> answers_match("1,000", "1000").is_correct, answers_match("0.5", "1/2").is_correct
    (True, True)
    >>> answers_match("7", "8").is_correct, answers_match("1 = 2", "2").status
    (False, 'refused')
    """
    if len(predicted) > MAX_ANSWER_CHARS:
        return MathGrade(predicted[:MAX_ANSWER_CHARS], False, "too_long")
    screened = screen_answer(predicted, gold)
    if screened.refused is not None:
        return MathGrade(predicted, False, "refused")
    if screened.predicted.replace(" ", "") == screened.gold.replace(" ", ""):
        return MathGrade(predicted, True, "ok")
    numbers = parse_number(screened.predicted), parse_number(screened.gold)
    if numbers[0] is not None and numbers[1] is not None:
        return MathGrade(predicted, numbers[0] == numbers[1], "ok")
    if not screened.predicted:
        return MathGrade(predicted, False, "refused")
    verdict = (verifier or default_verifier()).compare(screened.gold, screened.predicted)
    return MathGrade(predicted, verdict.equal, verdict.status)


def grade_text(text: str, gold: str, answer_format: AnswerFormat, verifier: MathVerifier | None = None) -> MathGrade:
    """Extracts the answer from model ``text`` and grades it against ``gold`` (1/0 reward).

    >>> grade_text("... #### 18", "18", "gsm8k").is_correct
    True
    >>> grade_text("I don't know", "18", "boxed")
    MathGrade(answer=None, is_correct=False, status='no_answer')
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    candidates = [c for c in _candidates(text, answer_format) if c]
    if not candidates:
        return MathGrade(None, False, "no_answer")
    answer = candidates[-1]
    if any(not _same_answer(c, answer) for c in candidates):
        return MathGrade(answer, False, "ambiguous")
    return answers_match(answer, gold, verifier)
