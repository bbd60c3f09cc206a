"""``collect-episodes`` resumes: a stopped run, started again, writes what an uninterrupted one would."""

from __future__ import annotations

from pathlib import Path

import pytest

from cola_agents.collect import collect_episodes, collect_search_episodes, pending_problems
from cola_agents.mcts import MCTSConfig
from cola_gym.errors import DataFormatError
from cola_gym.training.q_records import logged_problems

ENV_ID = "CoLA-Micro-Countdown-Medium-Train-v0"
SAMPLING = MCTSConfig(leaf_value="oracle", rollout_temperature=1.0, rollout_max_tokens=32, seed=5)
SEARCH = MCTSConfig(leaf_value="oracle", rollout_policy="greedy", token_budget=64, num_simulations=16,
                    rollout_max_tokens=32, stop_on_finished_answer=False, parallel_expansions=2)  # fmt: skip
PROBLEMS = range(8192, 8198)


def test_sampled_collection_resumes_to_the_uninterrupted_runs_file(tmp_path: Path) -> None:
    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    collect_episodes(ENV_ID, PROBLEMS, whole, samples=3, batch_problems=2, config=SAMPLING, show_progress=False)
    first = collect_episodes(ENV_ID, PROBLEMS[:2], resumed, samples=3, batch_problems=2, config=SAMPLING,
                             show_progress=False)  # fmt: skip
    second = collect_episodes(ENV_ID, PROBLEMS, resumed, samples=3, batch_problems=2, config=SAMPLING,
                              show_progress=False)  # fmt: skip
    assert (first["skipped_problems"], second["skipped_problems"]) == (0, 2)
    assert (first["episodes"], second["episodes"]) == (6, 12)
    assert resumed.read_text() == whole.read_text()
    again = collect_episodes(ENV_ID, PROBLEMS, resumed, samples=3, batch_problems=2, config=SAMPLING,
                             show_progress=False)  # fmt: skip
    assert again["episodes"] == 0 and again["skipped_problems"] == len(PROBLEMS)
    assert resumed.read_text() == whole.read_text()


def test_searched_collection_resumes_to_the_uninterrupted_runs_file(tmp_path: Path) -> None:
    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    collect_search_episodes(ENV_ID, PROBLEMS[:4], whole, SEARCH, searches=2, batch_problems=2, show_progress=False)
    collect_search_episodes(ENV_ID, PROBLEMS[:2], resumed, SEARCH, searches=2, batch_problems=2, show_progress=False)
    summary = collect_search_episodes(ENV_ID, PROBLEMS[:4], resumed, SEARCH, searches=2, batch_problems=2,
                                      show_progress=False)  # fmt: skip
    assert summary["skipped_problems"] == 2
    assert resumed.read_text() == whole.read_text()


def test_a_half_written_last_line_is_cut_off_and_its_problem_collected_again(tmp_path: Path) -> None:
    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    collect_episodes(ENV_ID, PROBLEMS[:4], whole, samples=2, batch_problems=2, config=SAMPLING, show_progress=False)
    lines = whole.read_text().splitlines(keepends=True)
    resumed.write_text("".join(lines[:4]) + lines[4][:40])  # problems 8192-8193, then a line cut mid-record
    assert pending_problems(resumed, PROBLEMS[:4]) == [8194, 8195]
    assert resumed.read_text() == "".join(lines[:4])
    collect_episodes(ENV_ID, PROBLEMS[:4], resumed, samples=2, batch_problems=2, config=SAMPLING, show_progress=False)
    assert resumed.read_text() == whole.read_text()


@pytest.mark.parametrize("line", ['{"ids": [1, 2]}\n', "not json\n", '{"problem_index": "seven"}\n'])
def test_a_file_that_is_not_an_episode_log_is_refused_and_kept(tmp_path: Path, line: str) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text('{"problem_index": 1}\n' + line)
    before = path.read_text()
    with pytest.raises(DataFormatError, match=r"other\.jsonl:2 is not an episode record.*new file"):
        collect_episodes(ENV_ID, PROBLEMS[:1], path, samples=1, config=SAMPLING, show_progress=False)
    assert path.read_text() == before
    assert logged_problems(tmp_path / "missing.jsonl") == set()
