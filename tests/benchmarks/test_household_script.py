"""``benchmarks/household.py``: both engines on the same game files, and the env driven by the prior."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def household(benchmark_script):
    pytest.importorskip("alfworld", reason="the files part runs ALFWorld's engine beside ours")
    return benchmark_script("household")


def _args(**values) -> argparse.Namespace:
    defaults = {"engine_games": 2, "native_repeats": 2, "game_files": None, "tier": "micro", "model": None,
                "env_batches": [2], "tokens": 6, "rounds": 1, "env_actions": "prior"}  # fmt: skip
    return argparse.Namespace(**(defaults | values))


def test_files_part_times_both_engines_and_lists_refusals(household, tmp_path: Path) -> None:
    from cola_gym.tasks.household import generate_game
    from cola_gym.tasks.household.alfworld import tw_pddl_game

    report = household.files_part(_args())
    assert report["games"] == 2 and not report["refused"]
    assert report["speedup_per_command"] > 1 and report["speedup_per_start"] > report["speedup_per_load"] > 1
    data = tw_pddl_game(generate_game("valid_seen", 0))
    (tmp_path / "good.tw-pddl").write_text(json.dumps(data))
    data["pddl_problem"] = data["pddl_problem"].replace("(:init\n", "(:init\n  (holdsAny agent1)\n")
    (tmp_path / "holding.tw-pddl").write_text(json.dumps(data))
    report = household.files_part(_args(game_files=str(tmp_path)))
    assert report["games"] == 1 and list(report["refused"]) == [str(tmp_path / "holding.tw-pddl")]
    assert "holds something" in next(iter(report["refused"].values()))
    assert "Game files:" in household.markdown({"files": report})


def test_env_part_can_play_the_prior(household, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(household.__file__).parent))  # it imports throughput.py beside it
    report = household.env_part(_args())
    row = report["batches"]["2"]
    assert report["actions"] == "prior" and row["env_tokens_per_s"] > 0 and row["decoder_tokens_per_env_token"] >= 1
