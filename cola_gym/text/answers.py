r"""The answer protocol: ``<answer>`` tags first, else a task's usual form; one value tasks compose.

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

:class:`AnswerProtocol` bundles what a task needs of this: the instruction it adds to a
question, when a turn is complete, how the answer is read, and the format reward.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cola_gym.text.numbers import find_numbers, parse_number

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


@dataclass(frozen=True)
class AnswerProtocol:
    """How a task asks for, reads and pays an answer in ``<answer>`` tags.

    Attributes:
        instruction: appended to each question (after ``separator``).
        format_reward: the least reward of a well-formed answer (in ``[0, 1)``).
        fallback: the extractor used when there are no tags (``"tag"``: none).
        separator: what joins the question and the instruction.

    >>> protocol = AnswerProtocol(THINK_INSTRUCTION, format_reward=0.1)
    >>> protocol.is_complete("<think>2 + 2</think><answer>4</answer>")
    True
    >>> protocol.extract("<answer> 4 </answer>").answer
    '4'
    >>> protocol.reward(0.0, well_formed=True), protocol.reward(1.0, well_formed=True)
    (0.1, 1.0)
    """

    instruction: str
    format_reward: float = 0.0
    fallback: Extractor = "tag"
    separator: str = "\n"

    def __post_init__(self) -> None:
        if not 0.0 <= self.format_reward < 1.0:
            raise ValueError(f"format_reward must be in [0, 1), got {self.format_reward}")
        if self.fallback not in EXTRACTORS:
            raise ValueError(f"extractor must be one of {EXTRACTORS}, got {self.fallback!r}")

    def pose(self, question: str) -> str:
        """The user message: the question, then the instruction."""
        return f"{question}{self.separator}{self.instruction}" if self.instruction else question

    def is_complete(self, text: str) -> bool:
        """Whether the turn has its answer (an ``<answer>`` opened and closed): the episode can end."""
        return answer_closed(text)

    def extract(self, text: str, reference: str | None = None) -> Extraction:
        """The answer of ``text`` (tags, else :attr:`fallback`; see :func:`extract`)."""
        return extract(text, self.fallback, reference)

    def reward(self, score: float, well_formed: bool) -> float:
        """The reward of a graded answer: its score, at least :attr:`format_reward` if well formed."""
        return max(score, self.format_reward) if well_formed else score
