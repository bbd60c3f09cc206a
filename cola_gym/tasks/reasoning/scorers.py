"""Which of reasoning-gym's scorers may see model text, and what an answer is paid.

Model text is untrusted: an RL policy writes whatever its reward pays for. Three rules:

1. **Vetted scorers only.** A data set is accepted only if its scorer is on
   :data:`VETTED_SCORERS`: the scorers of reasoning-gym 0.1.25 that were read and then
   exercised with hostile answers (Python code, ``9**9**9``, deep brackets, 1,000-character
   strings) without compiling or running any of them, and without paying them. Seven
   scorers pass model text to ``eval`` or sympy's ``parse_expr`` and one pays any
   non-empty answer (:data:`REFUSED`); Countdown and Puzzle24 are graded by the project's
   exact evaluator instead (:data:`EXPRESSION_SCORED`). A data set on none of these lists
   (a new library version's) is refused until it is vetted. The ``composite`` data set is
   accepted only if every member is. Scorers then run in a worker process with a time
   limit (:mod:`cola_gym.rewards.verifier`), so even a vetted scorer that a hostile answer
   slows down scores 0 instead of hanging.
2. **One value for one value** (:func:`states_one_value`): where the reference is a number,
   the answer must be one number (``11 12``, ``1,1`` and ``5 apples`` are not); where it is
   yes or no, the answer must be that one word, in any case (``YesNo``, ``yes or no`` are not).
3. **No credit for padding or hedges**: the library's partial credit (a substring match
   pays ``len(reference) / len(answer)``) is replaced by 0, except for data sets whose
   answers really have parts (:data:`PARTIAL_CREDIT`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cola_gym.text.answers import form_of
from cola_gym.text.numbers import parse_number

VETTED_SCORERS = frozenset(
    {
        "ab", "acre", "advanced_geometry", "aiw", "arc_1d", "arc_agi", "base_conversion", "basic_arithmetic", "bf",
        "binary_alternation", "bitwise_arithmetic", "boxnet", "caesar_cipher", "calendar_arithmetic", "chain_sum",
        "circuit_logic", "codeio", "coin_flip", "color_cube_rotation", "complex_arithmetic", "count_bits",
        "count_primes", "course_schedule", "cryptarithm", "decimal_arithmetic", "decimal_chain_sum", "dice",
        "emoji_mystery", "family_relationships", "figlet_font", "fraction_simplification", "futoshiki", "game_of_life",
        "gcd", "graph_color", "group_anagrams", "gsm_symbolic", "isomorphic_strings", "jugs",
        "kakurasu", "knight_swap", "knights_knaves", "largest_island", "lcm", "leg_counting", "letter_counting",
        "letter_jumble", "list_functions", "mahjong_puzzle", "manipulate_matrix", "maze", "mini_sudoku", "modulo_grid",
        "needle_haystack", "number_filtering", "number_format", "number_sequence", "number_sorting",
        "palindrome_generation", "palindrome_partitioning", "path_star", "polynomial_equations", "pool_matrix",
        "power_function", "prime_factorization", "products", "propositional_logic", "quantum_lock", "ransom_note",
        "rearc", "rectangle_count", "rotate_matrix", "rotten_oranges", "rubiks_cube", "rush_hour", "self_reference",
        "sentence_reordering", "shortest_path", "simple_equations", "simple_geometry", "sokoban", "spell_backward",
        "string_manipulation", "string_splitting", "string_synthesis", "sudoku", "survo", "syllogism", "time_intervals",
        "tower_of_hanoi", "tsumego", "word_ladder", "word_sequence_reversal", "word_sorting", "zebra_puzzles",
    }
)  # fmt: skip
"""Data sets whose library scorer never compiles or runs the answer (reasoning-gym 0.1.25)."""

REFUSED = {
    "binary_matrix": "its scorer calls eval() on the answer",
    "spiral_matrix": "its scorer calls eval() on the answer",
    "string_insertion": "its scorer calls eval() on the answer",
    "n_queens": "its scorer calls eval() on the answer",
    "polynomial_multiplication": "its scorer parses the answer with sympy's parse_expr, which calls eval()",
    "simple_integration": "its scorer parses the answer with sympy's parse_expr, which calls eval()",
    "intermediate_integration": "its scorer parses the answer with sympy's parse_expr, which calls eval()",
    "game_of_life_halting": "its scorer pays 1.0 for any non-empty answer (it compares bool(answer))",
}
"""Data sets refused because their scorer executes model text or pays any answer, and why."""

EXPRESSION_SCORED: dict[str, int | None] = {"countdown": None, "puzzle24": 24}
"""Data sets graded by the project's exact evaluator (value: a fixed target, else the item's).

The library's scorers of these two run ``parse_expr`` on the answer and pay ``3!*4`` or
numbers that were not given."""

PARTIAL_CREDIT = {
    "knights_knaves": "one part per person: 0.3 + 0.7 x the share of people whose role is right, "
    "when every person is named once",
}
"""Data sets whose answers have parts, where the library's partial credit is paid."""

WRAPPERS = ("composite",)
"""Data sets that wrap others (their members are checked)."""

_YES_NO = re.compile(r"\s*(yes|no)\s*[.!]?\s*", re.IGNORECASE)


def check_dataset(name: str, config: Mapping[str, Any] | None = None) -> None:
    """Raises ``ValueError`` unless model answers to ``name`` (with ``config``) may be scored.

    ``composite`` is checked member by member (``config["datasets"]``: ``DatasetSpec``
    objects or mappings with a ``name``); a member graded by the project's evaluator is
    refused inside a composite, whose scorer would call the library's.
    """
    if name in WRAPPERS:
        members = (config or {}).get("datasets")
        if not isinstance(members, (list, tuple)) or not members:
            raise ValueError(f"{name}: config['datasets'] must list its member data sets")
        for member in members:
            member_name = member_spec(member)["name"]
            try:
                check_dataset(member_name)
            except ValueError as err:
                raise ValueError(f"{name} member {err}") from None
            if member_name in EXPRESSION_SCORED:
                raise ValueError(
                    f"{name} member {member_name!r}: the library's scorer for it executes model text; use "
                    f"dataset={member_name!r} on its own (graded by cola-gym's exact evaluator)"
                )
        return
    if name in REFUSED:
        raise ValueError(
            f"reasoning-gym's data set {name!r} is refused: {REFUSED[name]}. Pick another data set, or write a "
            "Task with a safe scorer."
        )
    if name not in VETTED_SCORERS and name not in EXPRESSION_SCORED:
        raise ValueError(
            f"reasoning-gym's scorer for {name!r} has not been vetted for model text (cola-gym vetted those of "
            "reasoning-gym 0.1.25); it is refused until it is"
        )


def member_spec(member: Any) -> dict[str, Any]:
    """A composite member (a ``DatasetSpec`` or a mapping) as ``{"name", "weight", "config"}``."""
    fields = member if isinstance(member, Mapping) else vars(member) if hasattr(member, "__dict__") else {}
    name, weight, config = fields.get("name"), fields.get("weight", 1.0), fields.get("config") or {}
    if not isinstance(name, str) or not isinstance(config, Mapping) or not isinstance(weight, (int, float)):
        raise ValueError(f"a composite member needs a name, a weight and a config mapping, got {member!r}")
    if name in WRAPPERS:
        raise ValueError(f"a composite member cannot itself be a {name!r}: list its members instead")
    return {"name": name, "weight": float(weight), "config": dict(config)}


def states_one_value(answer: str, reference: str | None) -> bool:
    """Whether ``answer`` states one value of the kind ``reference`` is.

    >>> [states_one_value(a, "11") for a in ("11", "1,1", "11 12", "1,100", "11 apples")]
    [True, False, False, True, False]
    >>> [states_one_value(a, "Yes") for a in ("yes.", "YesNo", "Yes or no", "No")]
    [True, False, False, True]
    """
    if reference is None:
        return True
    form = form_of(reference)
    if form == "last_number":
        return parse_number(answer) is not None
    if form == "first_yes_no":
        return _YES_NO.fullmatch(answer) is not None
    return True


def normal_form(answer: str, reference: str | None) -> str:
    """The answer as the library's scorer expects it: a yes/no word capitalised (``yes.`` -> ``Yes``)."""
    found = _YES_NO.fullmatch(answer)
    if found is not None and reference is not None and form_of(reference) == "first_yes_no":
        return found.group(1).capitalize()
    return answer


def credited(score: float, dataset: str) -> float:
    """The reward of a library score: itself where answers have parts, else 1 or 0."""
    if dataset in PARTIAL_CREDIT:
        return score
    return 1.0 if score >= 1.0 else 0.0
