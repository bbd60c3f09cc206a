"""rl-baselines3-zoo trains on the ids with the shipped hyperparameter files, PPO unmodified and GRPO added."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from cola_agents.zoo import HYPERPARAMS, add_algorithms

ZOO_ALGORITHMS = {"ppo": "n_steps:8 batch_size:8", "a2c": "n_steps:4", "ppo_mask": "n_steps:8 batch_size:8",
                  "grpo": "group_size:2 batch_size:8"}  # fmt: skip


def test_every_file_has_a_default_that_starts_from_the_prior() -> None:
    assert sorted(p.stem for p in HYPERPARAMS.glob("*.yml")) == sorted(ZOO_ALGORITHMS)
    for path in HYPERPARAMS.glob("*.yml"):
        table = yaml.safe_load(path.read_text())
        for entry in table.values():
            assert entry["env_kwargs"] == {"observation": "hidden+prior"}
            assert entry["n_timesteps"] > 0


@pytest.mark.parametrize("algo", list(ZOO_ALGORITHMS))
def test_zoo_trains_each_algorithm(algo: str, tiny_cola_dir: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("rl_zoo3")
    from rl_zoo3.train import train

    add_algorithms()
    env_id = "CoLA-Countdown-Easy-Train-v0"
    argv = ["train", "--algo", algo, "--env", env_id, "--gym-packages", "cola_gym",
            "--conf-file", str(HYPERPARAMS / f"{algo}.yml"), "-n", "32", "--eval-freq", "-1", "-f", str(tmp_path),
            "--seed", "0", "--env-kwargs", f"model:'{tiny_cola_dir}'", "max_episode_steps:4",
            "observation:'hidden+prior'", "--hyperparams", "n_envs:2", *ZOO_ALGORITHMS[algo].split()]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    train()
    saved = list((tmp_path / algo).glob(f"{env_id}_*/{env_id}.zip"))
    assert len(saved) == 1 and saved[0].stat().st_size > 0
