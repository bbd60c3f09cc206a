"""``benchmarks/expert_iteration.py`` and ``benchmarks/household_table.py`` end to end on small inputs."""

from __future__ import annotations

import json
from pathlib import Path


def test_expert_iteration_runs_a_round_and_resumes(benchmark_script, tmp_path: Path, capsys) -> None:
    script = benchmark_script("expert_iteration")
    out = tmp_path / "ei.json"
    argv = ["--rounds", "1", "--tokens-per-round", "256", "--problems-per-round", "4", "--steps", "2",
            "--eval-problems", "4", "--seeds", "1", "--work", str(tmp_path / "work"), "--out", str(out),
            "--suite-results", str(tmp_path / "no-suite")]  # fmt: skip
    script.main(argv)
    report = json.loads(out.read_text())
    (row,) = report["rounds"]
    assert row["problems"] == [0, 4] and 0 <= row["solved"] <= 4 and row["search_tokens"] > 0
    assert Path(row["model"]).is_dir() and out.with_suffix(".png").is_file()
    assert (tmp_path / "work" / "round0.jsonl").read_text().count("\n") == row["solved"]
    assert "expert iteration, round 1" in capsys.readouterr().out
    script.main(argv)  # finished rounds are kept, not searched again
    assert json.loads(out.read_text())["rounds"] == report["rounds"]


def test_household_table_reads_a_suites_runs(benchmark_script, tmp_path: Path, capsys) -> None:
    script = benchmark_script("household_table")
    from cola_gym.tasks.household import generate_game

    successes = [generate_game("valid_unseen", i).goal.task_type == "pick_and_place_simple" for i in range(12)]
    greedy = [not s for s in successes]
    start = {"env_tokens": 0, "successes": [False] * 12, "greedy_successes": [False] * 12}
    run = {"finished": True, "curve": [start, {"env_tokens": 1000, "successes": successes, "greedy_successes": greedy}]}
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "grpo__Micro-ALFWorld-Unseen__seed0.json").write_text(json.dumps(run))
    script.main(["--runs", str(tmp_path), "--out", str(tmp_path / "table.md")])
    table = (tmp_path / "table.md").read_text()
    assert "| grpo, sampled, after 1,000 env tokens (1 seeds) | unseen | 17 | 100 | 0 |" in table  # All: 2 of 12 games
    assert "| grpo, greedy, after 1,000 env tokens (1 seeds) | unseen | 83 | 0 | 100 |" in table  # the other 10
    assert "| grpo, greedy, start (1 seeds) | unseen | 0 | 0 | 0 |" in table
    assert "Qwen2.5-1.5B-Instruct, GiGPO" in table and "CoLA prior, greedy" in table
