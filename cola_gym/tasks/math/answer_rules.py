r"""What counts as an answer: the rules a careful human grader applies before comparing.

An RL agent optimises whatever the grader pays, so answers that only *contain* the
reference are refused before any symbolic comparison (math-verify would accept several of
them). The rules, each pinned by a table test:

- **One value for one value.** When the reference is a single value, lists, sets and
  hedges are refused: ``1, 2, 3``, ``\{2\}``, ``1 \text{ or } 2``, ``5 \vee 6``,
  ``\pm 5``. (A reference that is itself a list or a set is compared as a set.)
- **Relations.** When the reference states no relation, the answer may name its variable
  once (``x = 5``, ``x_1 = 5``) and is then compared by its right side; anything else with a
  relation is refused: ``1 = 2``, ``x = 1 = 2``, ``5 = 5``, ``x > 5``, ``\approx 5``.
- **Percent is a unit.** ``\%`` is dropped from both sides, so ``2\%`` matches ``2`` and
  ``2\%`` only, never ``0.02`` or ``1/50``: one answer cannot match two references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PERCENT = re.compile(r"\\%|%|\\text\{\s*\\?%\s*\}|\\(?:text|mbox)\{\s*percent\s*\}|\bpercent\b")
_THOUSANDS = re.compile(r"(?<=\d),(?:\\!\s?)?(?=\d{3}(?!\d))")
_RELATION = re.compile(
    r"(?<![\\<>!:])=|:=|<|>|\\(?:approx|simeq|sim|equiv|cong|neq?|leq?q?|geq?q?|lt|gt|in|notin|to|implies|"
    r"Rightarrow|Leftrightarrow|iff|propto)(?![A-Za-z])"
)
_HEDGE = re.compile(r"\\(?:lor|vee|pm|mp)(?![A-Za-z])|\bor\b")
_LIST = re.compile(r",|\\\{|\\cup(?![A-Za-z])|\\cap(?![A-Za-z])")
_VARIABLE = re.compile(r"\s*(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?'*\s*")
_DELIMITERS = re.compile(r"^\s*(?:\$|\\\(|\\\[)|(?:\$|\\\)|\\\])\s*$")


@dataclass(frozen=True)
class ScreenedAnswer:
    """An answer after the rules: what to compare, or why it is not an answer.

    Attributes:
        predicted: the answer to compare (variable name and percent signs removed).
        gold: the reference, percent signs removed.
        refused: ``None``, or ``"relation"``, ``"hedge"`` or ``"list"``.
    """

    predicted: str
    gold: str
    refused: str | None = None


def _bare(answer: str) -> str:
    return _THOUSANDS.sub("", _DELIMITERS.sub("", answer.strip())).strip()


def screen_answer(predicted: str, gold: str) -> ScreenedAnswer:
    r"""Applies the rules of the module docstring to ``predicted`` against ``gold``.

    >>> screen_answer("x = 5", "5")
    ScreenedAnswer(predicted='5', gold='5', refused=None)
    >>> screen_answer("1 = 2", "2").refused, screen_answer(r"5 \vee 6", "6").refused
    ('relation', 'hedge')
    >>> screen_answer(r"2\%", "2"), screen_answer("1,000", "1000").refused
    (ScreenedAnswer(predicted='2', gold='2', refused=None), None)
    """
    answer, reference = _bare(_PERCENT.sub("", predicted)), _bare(_PERCENT.sub("", gold))
    if not _RELATION.search(reference):
        relations = _RELATION.findall(answer)
        if relations:
            left, _, right = answer.partition(relations[0])
            if len(relations) > 1 or relations[0] not in ("=", r"\in") or not _VARIABLE.fullmatch(left):
                return ScreenedAnswer(answer, reference, "relation")
            answer = right.strip()
    if not _HEDGE.search(reference) and _HEDGE.search(answer):
        return ScreenedAnswer(answer, reference, "hedge")
    if not _LIST.search(reference) and _LIST.search(answer):
        return ScreenedAnswer(answer, reference, "list")
    return ScreenedAnswer(answer, reference)
