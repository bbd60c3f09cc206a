"""``benchmarks/balanced_accuracy.py``: a constant answer scores chance, whatever the majority class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def script(benchmark_script):
    return benchmark_script("balanced_accuracy")


def test_a_constant_answer_scores_chance(script) -> None:
    labels = ["yes"] * 25 + ["no"] * 7
    always_yes = [label == "yes" for label in labels]
    assert sum(always_yes) / len(labels) == pytest.approx(25 / 32)  # what plain accuracy pays it
    assert script.balanced(always_yes, labels) == pytest.approx(0.5)
    assert script.balanced([True] * 32, labels) == 1.0 and script.balanced([False] * 32, labels) == 0.0
    one_no_right = [label == "no" for label in labels][:1] + [False] * 31
    assert script.balanced(one_no_right, labels) == pytest.approx(0.0)  # the first problem is a "yes"


def test_run_files_are_read_with_the_tasks_references(script, tmp_path: Path) -> None:
    """Run files of a yes/no reasoning level: references from the task itself, per run and point."""
    references = script.references("CoLA-Syllogism-Easy-v0", 8)
    assert references is not None and set(references) <= {"yes", "no"}
    (tmp_path / "runs").mkdir()
    constant = [r == "yes" for r in references]
    run = {"eval_id": "CoLA-Syllogism-Easy-v0", "finished": True,
           "curve": [{"env_tokens": 0, "success_rate": sum(constant) / 8, "successes": constant}]}  # fmt: skip
    (tmp_path / "runs" / "grpo__Syllogism-Easy__seed0.json").write_text(json.dumps(run))
    (tmp_path / "runs" / "ppo__Syllogism-Easy__seed0.json").write_text(json.dumps(run | {"finished": False}))
    report = script.analyse(tmp_path, max_classes=8)
    points = report["Syllogism-Easy"]["runs"]["grpo|seed0"]
    assert list(report["Syllogism-Easy"]["runs"]) == ["grpo|seed0"], "unfinished runs are left out"
    classes = len(set(references))
    assert points[0]["balanced"] == pytest.approx(1 / classes if classes > 1 else 1.0)
    assert "Syllogism-Easy" in script.table(report)
