"""Reading numbers written in model text: the whole number form, compared by value.

A number is an optional sign and dollar sign, an integer (plain, or with thousands
separators ``1,234,567``), an optional decimal part, an optional ``/denominator`` and an
optional exponent (``1e9``, ``2.5E-3``). ``1/18`` is one number (never 18), and
``1,2,3`` is three.
"""

from __future__ import annotations

import re
from fractions import Fraction

_INTEGER = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
_DECIMAL = _INTEGER + r"(?:\.\d+)?"
NUMBER = r"(?<![\w.])[-+]?\$?" + _DECIMAL + r"(?:/" + _DECIMAL + r")?(?:[eE][-+]?\d+)?(?!\d)"
"""Regular expression of one number in text (see the module docstring)."""

_NUMBER_RE = re.compile(NUMBER)
_WHOLE = re.compile(r"[-+]?" + _DECIMAL + r"(?:/" + _DECIMAL + r")?(?:[eE][-+]?\d+)?")
_MAX_EXPONENT = 1000


def find_numbers(text: str) -> list[str]:
    """Every number written in ``text``, in order, as written.

    >>> find_numbers("A: 1/18 of $1,200 is -66.6, or 1e9 (1,2,3)")
    ['1/18', '$1,200', '-66.6', '1e9', '1', '2', '3']
    """
    return _NUMBER_RE.findall(text)


def clean_number(number: str) -> str:
    """The number without dollar sign, separators, spaces, a leading ``+`` or a final full stop.

    >>> clean_number("$1,200."), clean_number("+3/4")
    ('1200', '3/4')
    """
    return number.replace("$", "").replace(",", "").replace(" ", "").rstrip(".").lstrip("+")


def parse_number(text: str) -> Fraction | None:
    """The exact value of ``text`` if it is one number and nothing else, else ``None``.

    >>> parse_number("1/18"), parse_number("-1,234.5"), parse_number("1e9"), parse_number("2.5/0.5")
    (Fraction(1, 18), Fraction(-2469, 2), Fraction(1000000000, 1), Fraction(5, 1))
    >>> parse_number("1/0"), parse_number("x"), parse_number("1e99999"), parse_number("12 apples")
    (None, None, None, None)
    """
    cleaned = text.strip().strip("$").strip()
    if not _WHOLE.fullmatch(cleaned.replace("$", "")):
        return None
    cleaned = clean_number(cleaned)
    mantissa, _, exponent = cleaned.lower().partition("e")
    if exponent and abs(int(exponent)) > _MAX_EXPONENT:
        return None  # 1e99999 would build a 330,000-digit integer
    numerator, _, denominator = mantissa.partition("/")
    try:
        value = Fraction(numerator) / Fraction(denominator) if denominator else Fraction(numerator)
    except ZeroDivisionError:
        return None
    return value * Fraction(10) ** int(exponent) if exponent else value
