"""The ``cola-gym`` command and the simple agents."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import torch

from cola_agents import Agent, BoundAgent, PlanningAgent, PriorAgent, RandomAgent
from cola_agents.cli import main


def test_episode_command_prints_text_answer_and_reward(tiny_cola_dir: Path, data_dir: Path, capsys) -> None:
    code = main(
        [
            "episode",
            "--env",
            "CoLA-GSM8K-v0",
            "--model",
            str(tiny_cola_dir),
            "--data-dir",
            str(data_dir),
            "--max-steps",
            "6",
            "--problem-index",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Janet" in out  # GSM8K test problem 0
    assert "=== model output ===" in out and "answer: \n" in out and "reference answer: 18" in out
    assert "success: False" in out
    assert "reward: 0  (truncated (step limit) after 6 tokens" in out


def test_episode_command_rejects_unknown_envs(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["episode", "--env", "CoLA-Nope-v0"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "/no/such/model"], "No model directory at /no/such/model"),
        (["--agent", "mcts", "--simulations", "0"], "num_simulations must be >= 1, got 0"),
    ],
)
def test_commands_report_bad_input_without_a_traceback(
    extra: list[str], message: str, tiny_cola_dir: Path, data_dir: Path, capsys
) -> None:
    args = ["episode", "--env", "CoLA-GSM8K-v0", "--model", str(tiny_cola_dir), "--data-dir", str(data_dir), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"cola-gym episode: error: {message}" in err and "Traceback" not in err


def test_policy_prior_agent_follows_the_policy(tiny_cola_dir: Path, data_dir: Path) -> None:
    env = gym.make("CoLA-GSM8K-v0", model=str(tiny_cola_dir), data_dir=str(data_dir), track_policy=True)
    env.reset(seed=0)
    obs, _ = env.reset(seed=0)
    logits = env.unwrapped.decoding_state.policy_logits[0]

    def act(agent: PriorAgent, deterministic: bool = False) -> int:
        agent.bind(env)
        return int(agent.predict(obs, deterministic=deterministic)[0])

    assert act(PriorAgent(), deterministic=True) == int(logits.argmax())
    assert act(PriorAgent(top_k=1, seed=3)) == int(logits.argmax())
    sampled = {act(PriorAgent(top_k=5, seed=s)) for s in range(20)}
    assert sampled <= set(torch.topk(logits, 5).indices.tolist()) and len(sampled) > 1


def test_policy_prior_agent_needs_a_tracked_policy(tiny_cola_dir: Path, data_dir: Path) -> None:
    env = gym.make("CoLA-GSM8K-v0", model=str(tiny_cola_dir), data_dir=str(data_dir))
    obs, _ = env.reset(seed=0)
    prior = PriorAgent()
    prior.bind(env)
    with pytest.raises(ValueError, match="track_policy=True"):
        prior.predict(obs)
    randomly = RandomAgent(seed=0)
    randomly.bind(env)
    assert 0 <= int(randomly.predict(obs)[0]) < 64


def test_agents_meet_the_protocols(tiny_cola) -> None:
    from cola_agents.mcts import MCTSAgent, MCTSConfig

    prior, planner = PriorAgent(), MCTSAgent(tiny_cola, MCTSConfig(leaf_value="oracle"))
    assert isinstance(prior, BoundAgent) and not isinstance(prior, PlanningAgent)
    assert isinstance(planner, PlanningAgent) and isinstance(RandomAgent(), Agent)
    assert not isinstance(object(), Agent)


def test_episode_command_with_tree_search(tiny_cola_dir: Path, data_dir: Path, capsys) -> None:
    code = main(["episode", "--env", "CoLA-GSM8K-v0", "--model", str(tiny_cola_dir), "--data-dir", str(data_dir),
                 "--max-steps", "5", "--problem-index", "1", "--agent", "mcts", "--simulations", "3",
                 "--rollout-tokens", "4", "--parallel-expansions", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "mcts: leaf values from the env reward (oracle)" in out  # the tiny model has no Q-network
    assert "reward: 0  (truncated (step limit) after 5 tokens" in out
