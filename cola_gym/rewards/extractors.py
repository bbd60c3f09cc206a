r"""Reading the answer out of model text: ``<answer>`` tags first, else a task's usual form.

The thinking-prompt format (DeepSeek-R1, TinyZero) asks for reasoning inside
``<think>...</think>`` and the final answer inside ``<answer>...</answer>``. A small model
rarely writes the tags unprompted, so each task also names a fallback extractor (the form
its answers usually take); which one decides measured success by tens of points, so it is
explicit per task and reported in ``info["extracted_by"]``.

>>> tagged_answer("<think>2 + 2 = 4</think>\n<answer> 4 </answer>")
'4'
>>> extract("So the total is 12 apples, or 12.", "last_number")
Extraction(answer='12', extracted_by='last_number')
>>> extract("<answer>Yes</answer>", "last_number")
Extraction(answer='Yes', extracted_by='tag')
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cola_gym.rewards.numbers import find_numbers, parse_number

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

THINK_INSTRUCTION = (
    "Think step by step inside <think> </think> tags, then give only the final answer inside "
    "<answer> </answer> tags, for example <answer> 42 </answer>."
)
"""The instruction of the ``"think"`` prompt style (math and reasoning tasks)."""

ANSWER_INSTRUCTION = "Give the final answer inside <answer></answer> tags."
"""The instruction of the ``"answer"`` prompt style (reasoning tasks)."""

MAX_ANSWER_CHARS = 1_000
"""Longer extracted answers are not graded (score 0): no scorer sees unbounded text."""

Extractor = Literal["tag", "auto", "last_number", "first_yes_no", "last_word", "last_line"]
EXTRACTORS: tuple[Extractor, ...] = ("tag", "auto", "last_number", "first_yes_no", "last_word", "last_line")

_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


@dataclass(frozen=True)
class Extraction:
    """An extracted answer (``None``: none found) and the extractor that found it."""

    answer: str | None
    extracted_by: str


def tagged_answer(text: str) -> str | None:
    """The stripped content of the last complete ``<answer>...</answer>``, or ``None``.

    Each ``<answer>`` pairs with the first ``</answer>`` after it, left to right (as a lazy
    regex would), in one linear scan: no input makes it slow.
    """
    found = None
    position = 0
    while (start := text.find(ANSWER_OPEN, position)) >= 0:
        end = text.find(ANSWER_CLOSE, start + len(ANSWER_OPEN))
        if end < 0:
            break
        found = (start + len(ANSWER_OPEN), end)
        position = end + len(ANSWER_CLOSE)
    return text[found[0] : found[1]].strip() if found else None


def answer_closed(text: str) -> bool:
    """Whether an ``<answer>`` has been opened and closed (the episode can end)."""
    start = text.find(ANSWER_OPEN)
    return start >= 0 and text.find(ANSWER_CLOSE, start) >= 0


def last_number(text: str) -> str | None:
    """The last number (``-3``, ``0.5``, ``2/5``) without ``$`` or thousands commas, or ``None``.

    >>> last_number("It costs $1,234.")
    '1234'
    """
    found = find_numbers(text)
    return found[-1].replace("$", "").replace(",", "") if found else None


def first_yes_no(text: str) -> str | None:
    """``"Yes"`` or ``"No"``: the first of the two words, or ``None``."""
    found = _YES_NO.search(text)
    return found.group(1).capitalize() if found else None


def last_word(text: str) -> str | None:
    """The last word, lower-cased (``"... is his wife."`` -> ``"wife"``), or ``None``."""
    found = _WORD.findall(text)
    return found[-1].lower() if found else None


def last_line(text: str) -> str | None:
    """The last non-empty line, stripped, or ``None``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


_FALLBACKS: dict[str, Callable[[str], str | None]] = {
    "last_number": last_number,
    "first_yes_no": first_yes_no,
    "last_word": last_word,
    "last_line": last_line,
}


def form_of(reference: str) -> Extractor:
    """The extractor that reads answers shaped like ``reference`` (what ``"auto"`` picks).

    >>> [form_of(r) for r in ("-4", "2/5", "Yes", "wife", "(1, 2)")]
    ['last_number', 'last_number', 'first_yes_no', 'last_word', 'last_line']
    """
    reference = reference.strip()
    if parse_number(reference) is not None:
        return "last_number"
    if reference.lower() in ("yes", "no"):
        return "first_yes_no"
    if _WORD.fullmatch(reference):
        return "last_word"
    return "last_line"


def extract(text: str, fallback: Extractor = "tag", reference: str | None = None) -> Extraction:
    """The answer of ``text``: the last tagged answer, else ``fallback`` (``"tag"``: none;
    ``"auto"``: the extractor for answers shaped like ``reference``, see :func:`form_of`)."""
    if fallback not in EXTRACTORS:
        raise ValueError(f"unknown extractor {fallback!r}; choose one of {EXTRACTORS}")
    tagged = tagged_answer(text)
    if tagged is not None:
        return Extraction(tagged, "tag")
    if fallback == "auto":
        fallback = form_of(reference) if reference is not None else "last_line"
    if fallback == "tag":
        return Extraction(None, "none")
    answer = _FALLBACKS[fallback](text)
    return Extraction(answer, fallback if answer is not None else "none")
