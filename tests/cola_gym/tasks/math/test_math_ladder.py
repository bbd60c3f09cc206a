"""The math ladder: MATH by level and GSM8K by solution steps, as registered ids."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.registration import task_for


def _rows(data_dir: Path, path: str) -> list[dict]:
    return [json.loads(line) for line in (data_dir / path).read_text().splitlines() if line.strip()]


def test_math_levels_keep_exactly_their_rows_renumbered(data_dir: Path) -> None:
    rows = _rows(data_dir, "math/test.jsonl")
    counts = Counter(row["level"] for row in rows)
    for level in range(1, 6):
        task = task_for(f"CoLA-MATH-Level{level}-v0", data_dir=str(data_dir))
        assert task.num_tasks == counts[f"Level {level}"] > 0
        assert [p.index for p in task.problems] == list(range(task.num_tasks))
        first = next(row for row in rows if row["level"] == f"Level {level}")
        assert task.problems[0].problem == first["problem"] and task.problems[0].difficulty == level


def test_gsm8k_steps_are_the_solution_lines_before_the_answer(data_dir: Path) -> None:
    rows = _rows(data_dir, "gsm8k/test.jsonl")
    steps = [sum(1 for line in row["answer"].split("####")[0].splitlines() if line.strip()) for row in rows]
    sizes = {k: task_for(f"CoLA-GSM8K-Steps{k}-v0", data_dir=str(data_dir)).num_tasks for k in (2, 3, 4, 5)}
    assert sizes == {2: steps.count(2), 3: steps.count(3), 4: steps.count(4), 5: sum(s >= 5 for s in steps)}
    assert sum(sizes.values()) == len(rows)  # every problem is on one rung (the shortest solutions have 2 steps)
    hardest = task_for("CoLA-GSM8K-Steps5-v0", data_dir=str(data_dir))
    assert min(p.difficulty for p in hardest.problems) == 5 and max(p.difficulty for p in hardest.problems) >= 8
    train = task_for("CoLA-GSM8K-Steps3-Train-v0", data_dir=str(data_dir))
    assert train.split == "train" and {p.difficulty for p in train.problems} == {3}


def test_bad_difficulties_are_clear(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="states no difficulty"):
        task_for("CoLA-Math500-v0", data_dir=str(data_dir), difficulty=3)
    for bad in ([3, 1], [1, 2, 3], "2", True):
        with pytest.raises(ValueError, match="difficulty must be an int or"):
            task_for("CoLA-MATH-v0", data_dir=str(data_dir), difficulty=bad)
    with pytest.raises(ValueError, match="no problem of difficulty 9-9"):
        task_for("CoLA-MATH-v0", data_dir=str(data_dir), difficulty=9)
    assert task_for("CoLA-GSM8K-v0", data_dir=str(data_dir), difficulty=[2, 3]).num_tasks == 326 + 371


def test_the_math_levels_are_labelled_rungs_of_the_ladder() -> None:
    from cola_gym.registration import parse_specs, registry

    ladder = registry().ladder
    assert [ladder[f"CoLA-MATH-Level{n}-v0"] for n in range(1, 6)] == [f"level{n}" for n in range(1, 6)]
    assert [ladder[f"CoLA-GSM8K-Steps{n}-v0"] for n in range(2, 6)] == [f"steps{n}" for n in range(2, 6)]
    assert "CoLA-MATH-Level1-Train-v0" not in ladder and "CoLA-MATH-Level1-Token-v0" not in ladder
    # a procedural level still has to be in the [levels] table; a label only names a rung
    spec = {"task": "m:C", "levels": {"easy": {"max_value": 10}}, "env": [{"id": "X-v0", "level": "eazy"}]}
    with pytest.raises(ValueError, match="unknown level 'eazy'"):
        parse_specs({"t": spec})
    spec["env"] = [{"id": "X-v0", "level": "easy", "level_label": "one"}]
    with pytest.raises(ValueError, match="both level and level_label"):
        parse_specs({"t": spec})
    spec["env"] = [{"id": "X-v0", "level_label": "one"}]
    entry = parse_specs({"t": spec})["X-v0"]
    assert entry.level == "one" and "level" not in entry.task_kwargs
