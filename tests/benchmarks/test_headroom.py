"""``benchmarks/headroom.py`` on a tiny model: pass@k of the prior and code aliasing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def headroom(benchmark_script):
    return benchmark_script("headroom")


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([[1, 0, 0]], {1: 1 / 3}),
        ([[0, 0], [1, 0], [0, 0], [0, 1], [0, 0]], {1: 0.2, 2: 0.4, 4: 0.8, 5: 1.0}),  # 1 right of 5: 1 - C(4,k)/C(5,k)
        ([[0, 1], [0, 1], [0, 1]], {1: 0.5, 2: 0.5, 3: 0.5}),  # a problem never solved stays unsolved
    ],
)
def test_pass_at_k(headroom, runs, expected) -> None:
    assert headroom.pass_at_k(np.array(runs, dtype=bool)) == pytest.approx(expected)


def test_headroom_of_a_tiny_model(headroom, tiny_cola_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "headroom.json"
    common = ["--model", str(tiny_cola_dir), "--problems", "3", "--samples", "4", "--batch", "3", "--max-steps", "6"]
    headroom.main(["--env", "CoLA-Countdown-Easy-v0", *common, "--out", str(out)])
    report = json.loads(out.read_text())
    values = list(report["pass_at_k"].values())
    assert list(report["pass_at_k"]) == ["1", "2", "4"] and values == sorted(values)  # more samples never solve less
    assert sum(report["problems_solved"].values()) == pytest.approx(1.0)
    aliasing = report["aliasing"]
    assert aliasing["steps"] == 3 * 6 and 1 <= aliasing["mean_distinct_tokens"] <= 64
    assert aliasing["token_entropy"] <= aliasing["code_entropy"] + 1e-6  # merging codes never adds entropy
    assert out.with_suffix(".png").is_file() and "pass@4" in capsys.readouterr().out
    token = tmp_path / "token.json"
    headroom.main(["--env", "CoLA-Countdown-Easy-Token-v0", *common, "--out", str(token)])
    assert "aliasing" not in json.loads(token.read_text())  # tokens do not alias
    with pytest.raises(SystemExit):
        headroom.main(["--env", "CoLA-Nope-v0", "--out", str(token)])
