"""``benchmarks/tasks.py`` end to end on a tiny model: rows, the grading clock, resuming."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cola_gym.tasks.countdown.task import CountdownTask

REPO = Path(__file__).resolve().parents[2]


def _run(tiny_cola_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "benchmarks" / "tasks.py"), "--model", str(tiny_cola_dir), "--out", str(out),
               "--problems", "3", "--batch", "3", "--seeds", "0", *extra]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def _main(module, monkeypatch, tiny_cola_dir: Path, out: Path, *extra: str) -> None:
    """The script's ``main`` in this process (the first run above goes through the command line)."""
    monkeypatch.setattr(sys, "argv", ["tasks.py", "--model", str(tiny_cola_dir), "--out", str(out), "--problems",
                                      "3", "--batch", "3", "--seeds", "0", *extra])  # fmt: skip
    module.main()


def test_base_success_rows_and_resume(tiny_cola_dir: Path, tmp_path: Path, monkeypatch, capsys,
                                      benchmark_script) -> None:  # fmt: skip
    tasks = benchmark_script("tasks")
    out = tmp_path / "tasks.json"
    done = _run(tiny_cola_dir, out, "--ids", "CoLA-LCM-Easy-v0", "CoLA-Countdown-Easy-v0")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {f"{i}|{m}|0" for i in ("CoLA-LCM-Easy-v0", "CoLA-Countdown-Easy-v0")
                                   for m in ("greedy", "sampled")}  # fmt: skip
    for run in report["runs"].values():
        assert run["problems"] == 3 and 0 <= run["success_rate"] <= 1 and 0 <= run["grading_share"] < 1
        assert 1 <= run["mean_tokens"] <= 192
    assert [row["id"] for row in report["rows"]] == ["CoLA-Countdown-Easy-v0", "CoLA-LCM-Easy-v0"]
    assert out.with_suffix(".png").is_file()
    report["runs"]["CoLA-LCM-Easy-v0|greedy|0"]["success_rate"] = 0.5  # a finished run is not measured again
    out.write_text(json.dumps(report))
    _main(tasks, monkeypatch, tiny_cola_dir, out, "--ids", "CoLA-LCM-Easy-v0")
    assert json.loads(out.read_text())["runs"]["CoLA-LCM-Easy-v0|greedy|0"]["success_rate"] == 0.5
    capsys.readouterr()
    _main(tasks, monkeypatch, tiny_cola_dir, out, "--table")
    assert "| CoLA-LCM-Easy-v0 | easy | **50%** (50%) |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        _main(tasks, monkeypatch, tiny_cola_dir, out, "--ids", "CoLA-GSM8K-v0")
    assert bad.value.code == 2 and "not ladder ids" in capsys.readouterr().err


def test_the_grading_clock_times_end_turn_and_restores_it(benchmark_script) -> None:
    module = benchmark_script("tasks")
    task = CountdownTask()
    state = task.begin({"task_index": 0}, np.random.default_rng(0)).state
    original = CountdownTask.end_turn
    with module.GradingClock(CountdownTask) as clock:
        assert task.end_turn(state, "<answer>1 + 2</answer>").reward == 0.1
    assert clock.seconds > 0 and CountdownTask.end_turn is original
