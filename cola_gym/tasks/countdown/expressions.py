"""A safe evaluator for arithmetic answers (Countdown, 24-style puzzles).

Model output is untrusted text: it is never passed to ``eval`` or to sympy's
``parse_expr`` (which calls ``eval``). An answer is checked with cheap bounds first
(length, characters, parenthesis depth), parsed with :mod:`ast`, and evaluated by walking
the tree: only integer literals, ``+ - * /`` and unary ``+ -`` are allowed, arithmetic is
exact (:class:`~fractions.Fraction`), and the number of operations is bounded, so every
answer is scored in microseconds and no value grows without bound.

>>> evaluate("(25 - 5) * 3 / 4")
Fraction(15, 1)
>>> expression_numbers("(25 - 5) * 3 / 4")
(25, 5, 3, 4)
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

MAX_LENGTH = 256
"""Longest accepted expression, in characters."""
MAX_DEPTH = 16
"""Deepest accepted parenthesis nesting."""
MAX_OPERATIONS = 32
"""Most operators (binary and unary) in one expression."""
MAX_DIGITS = 9
"""Most digits in one number."""

_ALLOWED = re.compile(r"[0-9+\-*/()\s]*")
_LEADING_ZERO = re.compile(r"(?<![0-9])0[0-9]")
_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class ExpressionError(ValueError):
    """An answer that is not an allowed arithmetic expression (the message says why)."""


@dataclass(frozen=True)
class Expression:
    """A parsed arithmetic expression.

    Attributes:
        value: its exact value.
        numbers: its integer literals, left to right.
    """

    value: Fraction
    numbers: tuple[int, ...]


def parse_expression(text: str) -> Expression:
    """Parses and evaluates ``text``; raises :class:`ExpressionError` for anything else.

    Rejected: more than :data:`MAX_LENGTH` characters, any character other than digits,
    ``+ - * /``, parentheses and spaces (so no names, calls, ``!``, ``^``, ``=`` or
    decimals), ``**`` and ``//``, nesting deeper than
    :data:`MAX_DEPTH`, more than :data:`MAX_OPERATIONS` operators, numbers longer than
    :data:`MAX_DIGITS` digits or with leading zeros, division by zero, and empty input.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"expected text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters ({len(text)})")
    text = text.strip()
    if not text:
        raise ExpressionError("empty expression")
    if _ALLOWED.fullmatch(text) is None:
        bad = next(c for c in text if _ALLOWED.fullmatch(c) is None)
        raise ExpressionError(f"character {bad!r} is not allowed (only digits, + - * / and parentheses)")
    if "**" in text or "//" in text:
        raise ExpressionError("only + - * / are allowed (no ** or //)")
    if _LEADING_ZERO.search(text):
        raise ExpressionError("numbers must not have leading zeros")
    depth = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        if depth > MAX_DEPTH:
            raise ExpressionError(f"parentheses nested deeper than {MAX_DEPTH}")
        if depth < 0:
            raise ExpressionError("unbalanced parentheses")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise ExpressionError(f"not an arithmetic expression: {type(err).__name__}") from None
    numbers: list[int] = []
    operations = [0]
    value = _evaluate(tree.body, numbers, operations)
    return Expression(value, tuple(numbers))


def evaluate(text: str) -> Fraction:
    """The exact value of an arithmetic expression (see :func:`parse_expression`)."""
    return parse_expression(text).value


def expression_numbers(text: str) -> tuple[int, ...]:
    """The integer literals of an arithmetic expression, left to right."""
    return parse_expression(text).numbers


def _evaluate(node: ast.expr, numbers: list[int], operations: list[int]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        if len(str(node.value)) > MAX_DIGITS:
            raise ExpressionError(f"numbers have at most {MAX_DIGITS} digits")
        numbers.append(node.value)
        return Fraction(node.value)
    operations[0] += 1
    if operations[0] > MAX_OPERATIONS:
        raise ExpressionError(f"more than {MAX_OPERATIONS} operations")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        operand = _evaluate(node.operand, numbers, operations)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _evaluate(node.left, numbers, operations)
        right = _evaluate(node.right, numbers, operations)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise ExpressionError("division by zero")
        return left / right
    raise ExpressionError(f"{type(node).__name__} is not allowed")


def uses_numbers_exactly(used: Iterable[int], given: Iterable[int]) -> bool:
    """Whether ``used`` is ``given`` as a multiset: every given number once, nothing else.

    >>> uses_numbers_exactly([3, 4, 3], [4, 3, 3]), uses_numbers_exactly([3, 4], [3, 3, 4])
    (True, False)
    """
    return Counter(used) == Counter(given)
