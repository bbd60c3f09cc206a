"""reasoning-gym's scorers against hostile answers: nothing a model writes runs or hangs.

Every data set the installed library offers is either vetted, refused, or graded by the
project's evaluator; every accepted one (alone and inside a ``composite``) is fed code,
``9**9**9`` and huge strings through the task's real scoring path; an audit hook proves the
vetted scorers never compile the answer, and that the refused ones do.
"""

from __future__ import annotations

import builtins
import contextlib
import sys
from pathlib import Path
from typing import Any

import pytest

from cola_gym.rewards.verifier import ReasoningGymScorer
from cola_gym.tasks.reasoning.scorers import (
    EXPRESSION_SCORED,
    PARTIAL_CREDIT,
    REFUSED,
    VETTED_SCORERS,
    WRAPPERS,
    check_dataset,
)
from cola_gym.tasks.reasoning.task import ReasoningGymTask, reasoning_gym_datasets

reasoning_gym = pytest.importorskip("reasoning_gym")

MARKER = "cola_gym_hostile_marker"
CODE = [
    f"__import__('builtins').__setattr__('{MARKER}', 1)",
    f"[__import__('builtins').__setattr__('{MARKER}', 1)]",
    f"{MARKER}",
    f"(lambda: __import__('builtins').__setattr__('{MARKER}', 1))()",
]
HUGE = ["9**9**9", "(" * 400 + "1" + ")" * 400, "9" * 999, "a" * 999, "1e999999999", "[[" * 300, "0x" + "f" * 990]

_compiled: list[str] = []
_watching = [False]


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching[0] and event == "compile":
        source = args[0]
        text = source.decode(errors="replace") if isinstance(source, bytes) else str(source)
        if MARKER in text:
            _compiled.append(text[:80])


sys.addaudithook(_audit)  # lives as long as the test process; records only while watching


def _compiles_the_answer(data: Any, entry: dict[str, Any]) -> bool:
    """Whether the library's own scorer compiles (and so may run) a code answer."""
    _compiled.clear()
    _watching[0] = True
    try:
        for answer in CODE:
            with contextlib.suppress(Exception):  # raising on odd text is fine; compiling it is not
                data.score_answer(answer=answer, entry=entry)
    finally:
        _watching[0] = False
    ran = getattr(builtins, MARKER, None) is not None
    if ran:
        delattr(builtins, MARKER)
    return bool(_compiled) or ran


def test_every_library_data_set_has_a_verdict() -> None:
    offered = reasoning_gym_datasets()
    judged = VETTED_SCORERS | set(REFUSED) | set(EXPRESSION_SCORED) | set(WRAPPERS)
    assert offered == judged, f"not judged: {sorted(offered - judged)}; gone: {sorted(judged - offered)}"
    assert not VETTED_SCORERS & (set(REFUSED) | set(EXPRESSION_SCORED))
    assert set(PARTIAL_CREDIT) <= VETTED_SCORERS


@pytest.mark.timeout(300)
def test_vetted_scorers_never_compile_model_text_and_refused_ones_do() -> None:
    compilers = []
    for name in sorted(VETTED_SCORERS | set(REFUSED)):
        data = reasoning_gym.create_dataset(name, seed=3, size=2)
        if _compiles_the_answer(data, data[0]):
            compilers.append(name)
    # the refused scorers are caught by the same probe, so the probe can fail
    assert set(compilers) <= set(REFUSED), f"vetted scorers that compile the answer: {set(compilers) - set(REFUSED)}"
    assert {"binary_matrix", "spiral_matrix", "string_insertion", "n_queens"} <= set(compilers)


@pytest.fixture(scope="module")
def scorer() -> Any:
    worker = ReasoningGymScorer(timeout_s=3.0)
    yield worker
    worker.close()


@pytest.mark.timeout(600)
def test_hostile_answers_score_zero_and_return_on_every_accepted_data_set(scorer: ReasoningGymScorer,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    marker = tmp_path / "ran"
    answers = [*CODE, f"__import__('pathlib').Path({str(marker)!r}).touch()", *HUGE]
    for name in sorted(VETTED_SCORERS | set(EXPRESSION_SCORED)):
        tasks = [ReasoningGymTask(name, size=2)]
        if name in VETTED_SCORERS:
            member = {"name": name, "weight": 1, "config": {}}
            tasks.append(ReasoningGymTask("composite", {"datasets": [member]}, size=2))
        for task in tasks:
            for answer in answers:
                assert task.score(answer, 0, scorer) < 1.0, (name, answer)
            reference = task.entry(1).get("answer")
            if reference is not None:  # the worker is still alive and paying right answers
                assert task.score(str(reference), 1, scorer) == 1.0, (name, reference)
    assert not marker.exists() and getattr(builtins, MARKER, None) is None


def test_a_scorer_that_runs_over_its_limit_scores_zero_and_the_next_answer_is_graded() -> None:
    scorer = ReasoningGymScorer(timeout_s=2.0)
    try:
        # the library's coin_flip scorer builds Fraction("1e999999999"): it never returns
        slow = scorer.score("coin_flip", {}, 1, 4, 0, "1e999999999")
        assert (slow.score, slow.status) == (0.0, "timeout")
        task = ReasoningGymTask("coin_flip", size=4)
        assert task.score(task.entry(0)["answer"], 0, scorer) == 1.0
        assert task.score("1e999999999", 0, scorer) == 0.0  # not one number for the grader: refused before
    finally:
        scorer.close()


@pytest.mark.parametrize(
    ("dataset", "config", "message"),
    [
        ("spiral_matrix", None, "is refused: its scorer calls eval"),
        ("game_of_life_halting", None, "pays 1.0 for any non-empty answer"),
        ("composite", {"datasets": [{"name": "spiral_matrix", "weight": 1, "config": {}}]}, "spiral_matrix"),
        (
            "composite",
            {
                "datasets": [
                    {"name": "chain_sum", "weight": 1, "config": {}},
                    {"name": "n_queens", "weight": 1, "config": {}},
                ]
            },
            "n_queens",
        ),
        ("composite", {"datasets": [{"name": "countdown", "weight": 1, "config": {}}]}, "on its own"),
        ("composite", {"datasets": [{"name": "composite", "weight": 1, "config": {}}]}, "cannot itself"),
        ("composite", {"datasets": []}, "must list"),
        ("composite", None, "must list"),
    ],
)
def test_refused_data_sets_and_composites(dataset: str, config: dict | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReasoningGymTask(dataset, config)


def test_the_composite_of_the_report_is_refused() -> None:
    from reasoning_gym.composite import DatasetSpec

    with pytest.raises(ValueError, match="spiral_matrix"):
        ReasoningGymTask("composite", {"datasets": [DatasetSpec("spiral_matrix", 1.0, {})]}, size=4)
    safe = ReasoningGymTask("composite", {"datasets": [DatasetSpec("chain_sum", 1.0, {})]}, size=4)
    assert safe.score(safe.entry(0)["answer"], 0) == 1.0


def test_unvetted_names_are_refused() -> None:
    with pytest.raises(ValueError, match="not been vetted"):
        check_dataset("some_future_dataset")


def _first(task: ReasoningGymTask, wanted: Any) -> int:
    """The first item whose reference answer passes ``wanted``."""
    return next(i for i in range(task.num_tasks) if wanted(str(task.entry(i)["answer"])))


EASY_SUM = {"min_terms": 2, "max_terms": 2, "min_digits": 2, "max_digits": 2}
# (data set, config, which item, the answer written from its reference, paid, why)
ANSWER_ROWS = [
    ("chain_sum", EASY_SUM, lambda r: r.isdigit(), lambda r: r, 1.0, "the number"),
    ("chain_sum", EASY_SUM, lambda r: r.isdigit(), lambda r: f"+{r}.0", 1.0, "the same number written otherwise"),
    ("chain_sum", EASY_SUM, lambda r: r.isdigit(), lambda r: f"{r} {int(r) + 1}", 0.0, "two numbers"),
    ("chain_sum", EASY_SUM, lambda r: r.isdigit(), lambda r: f"{int(r) - 1} {r}", 0.0, "two numbers, the last right"),
    ("chain_sum", EASY_SUM, lambda r: r.isdigit(), lambda r: f"{r[0]},{r[1:]}", 0.0, "a separator that changes it"),
    ("chain_sum", EASY_SUM, lambda r: r.isdigit(), lambda r: f"{r} apples", 0.0, "a number with words"),
    ("basic_arithmetic", None, lambda r: True, lambda r: f"The answer is {r}", 0.0, "padding (library: 0.1-0.3)"),
    ("gsm_symbolic", None, lambda r: True, lambda r: f"{r} or {int(r) + 1}", 0.0, "a hedge (library: 1.0)"),
    ("syllogism", None, lambda r: r == "Yes", lambda r: "Yes", 1.0, "the word"),
    ("syllogism", None, lambda r: r == "Yes", lambda r: "yes.", 1.0, "the word, any case, a full stop"),
    ("syllogism", None, lambda r: r == "Yes", lambda r: "YesNo", 0.0, "both (library: 0.6)"),
    ("syllogism", None, lambda r: r == "No", lambda r: "YesNo", 0.0, "both (library: 0.4)"),
    ("syllogism", None, lambda r: r == "No", lambda r: "No or Yes", 0.0, "both"),
    ("syllogism", None, lambda r: r == "No", lambda r: "No, because", 0.0, "more than the word"),
    ("family_relationships", None, lambda r: True, lambda r: f"{r} or cousin", 0.0, "a hedge (library: substring)"),
    ("coin_flip", None, lambda r: True, lambda r: r, 1.0, "the probability"),
    ("coin_flip", None, lambda r: True, lambda r: f"{r} {r}", 0.0, "two numbers"),
]


@pytest.mark.parametrize(("dataset", "config", "item", "write", "paid", "why"), ANSWER_ROWS,
                         ids=[f"{row[0]}: {row[5]}" for row in ANSWER_ROWS])  # fmt: skip
def test_what_counts_as_a_reasoning_answer(
    dataset: str, config: dict | None, item: Any, write: Any, paid: float, why: str, scorer: ReasoningGymScorer
) -> None:
    task = ReasoningGymTask(dataset, config, size=64)
    index = _first(task, item)
    assert task.score(write(str(task.entry(index)["answer"])), index, scorer) == paid, why


def test_partial_credit_is_paid_where_answers_have_parts(scorer: ReasoningGymScorer) -> None:
    task = ReasoningGymTask("knights_knaves", size=16)

    def roles(reference: str) -> list[str]:  # "Liam is a saint, and Harper is a sinner." -> ["saint", "sinner"]
        return [part.split(" is a ")[1].strip(" .") for part in reference.replace(", and ", ", ").split(", ")]

    index = _first(task, lambda r: len(set(roles(r))) == 2)
    reference = str(task.entry(index)["answer"])
    assert task.score(reference, index, scorer) == 1.0
    first, second = roles(reference)[:2]
    head, _, rest = reference.partition(f" is a {first}")
    one_wrong = f"{head} is a {second}{rest}"
    assert 0.3 < task.score(one_wrong, index, scorer) < 1.0  # one person wrong: the others' parts are paid


@pytest.mark.timeout(20)
def test_finding_the_tagged_answer_is_linear() -> None:
    from cola_gym.text.answers import tagged_answer

    # a lazy regex scans to the end from each of the 200,000 openings: hours; a linear scan: milliseconds
    assert tagged_answer("<answer>" * 200_000) is None
    assert tagged_answer("<answer>" * 200_000 + "4</answer>") == "<answer>" * 199_999 + "4"
    assert tagged_answer("<answer>1</answer> <answer>2</answer><answer>3") == "2"
