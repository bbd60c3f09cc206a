"""The ``cola-gym`` command and the simple agents."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from cola_agents import Agent, BoundAgent, PlanningAgent, PriorAgent, RandomAgent
from cola_agents.agents import EnvKwargsAgent
from cola_agents.algorithms import make_algorithm
from cola_agents.benchmark.suite import Suite
from cola_agents.cli import build_parser, main
from cola_agents.cli.init_decoder import tokenizer_texts
from cola_agents.config_args import add_config_arguments, config_values, field_docs, option_name
from cola_agents.mcts import MCTSConfig
from cola_agents.sb3 import make_sb3_env
from cola_gym.model import CoLAConfig, DecoderSettings
from cola_gym.registration import task_for
from cola_gym.text.chat import render_exchange
from cola_gym.training import TrainConfig
from cola_gym.training.micro import MicroShape


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


def test_greedy_token_takes_the_code_of_the_most_probable_token(tiny_cola_dir: Path, data_dir: Path) -> None:
    """Codes that write the same token pool their probability; the agent writes the pooled argmax."""
    vector = gym.make_vec("CoLA-GSM8K-v0", num_envs=8, vectorization_mode="vector_entry_point",
                          model=str(tiny_cola_dir), data_dir=str(data_dir), track_policy=True)  # fmt: skip
    obs, _ = vector.reset(options=[{"task_index": i} for i in range(8)])
    agent = PriorAgent(greedy="token")
    agent.bind(vector)
    differ = 0
    for _ in range(3):
        state, model = vector.unwrapped.decoding_state, vector.unwrapped.model
        probs = torch.softmax(state.policy_logits.float(), -1)
        tokens = model.tokens_of_every_action(state.hidden)
        actions = agent.predict(obs, deterministic=True)[0]
        for row, action in enumerate(actions):
            mass: dict[int, float] = {}
            for code, token in enumerate(tokens[row].tolist()):
                mass[token] = mass.get(token, 0.0) + float(probs[row, code])
            best = max(mass, key=mass.__getitem__)
            assert int(tokens[row, action]) == best
            assert float(probs[row, action]) == max(float(probs[row, c]) for c in range(64) if tokens[row, c] == best)
            assert mass[best] >= mass[int(tokens[row, int(probs[row].argmax())])]
            differ += int(action) != int(probs[row].argmax())
        obs, *_ = vector.step(actions)
    assert differ > 0  # the tiny model's codes alias: the argmax code often writes a less probable token
    # a peaked policy settles after a few codes (read two at a time): still the exact answer
    state, model = vector.unwrapped.decoding_state, vector.unwrapped.model
    peaked = state.policy_logits.float().cpu() * 30
    probs, tokens = torch.softmax(peaked, -1), model.tokens_of_every_action(state.hidden).cpu()
    mass = torch.zeros(8, int(tokens.max()) + 1).scatter_add_(1, tokens, probs)
    expected = probs.masked_fill(tokens != mass.argmax(-1, keepdim=True), -1.0).argmax(-1)
    assert torch.equal(agent._most_probable_tokens_code(peaked, chunk=2), expected)
    with pytest.raises(ValueError, match="greedy must be"):
        PriorAgent(greedy="word")  # type: ignore[arg-type]
    unbound = PriorAgent(greedy="token", num_actions=64)
    with pytest.raises(ValueError, match="bound to a latent-action env"):
        unbound.predict(np.zeros((1, 64 + 8), dtype=np.float32), deterministic=True)


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
    assert isinstance(prior, EnvKwargsAgent) and isinstance(planner, EnvKwargsAgent)
    assert not isinstance(RandomAgent(), EnvKwargsAgent)


def test_episode_command_with_tree_search(tiny_cola_dir: Path, data_dir: Path, capsys) -> None:
    from cola_gym.model.shared import _MODELS

    loaded = set(_MODELS)
    code = main(["episode", "--env", "CoLA-GSM8K-v0", "--model", str(tiny_cola_dir), "--data-dir", str(data_dir),
                 "--max-steps", "5", "--problem-index", "1", "--agent", "mcts", "--simulations", "3",
                 "--rollout-tokens", "4", "--parallel-expansions", "2", "--device", "cpu", "--dtype", "float32",
                 "--quantization", "none"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert len(set(_MODELS) - loaded) <= 1, "the agent and the env share one model"
    assert "mcts: leaf values from the env reward (oracle)" in out  # the tiny model has no Q-network
    assert "reward: 0  (truncated (step limit) after 5 tokens" in out


def _option_helps(argv: list[str], capsys) -> dict[str, str]:
    """Each option of ``cola-gym <argv> --help`` (its first option string) with its help, whitespace joined."""
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    helps: dict[str, str] = {}
    current = None
    for line in capsys.readouterr().out.splitlines():
        start = re.match(r"^  (--?[\w-]+)", line)
        if start:
            current = start.group(1)
            helps[current] = line
        elif current and line.startswith("   "):
            helps[current] += line
        else:
            current = None
    return {option: " ".join(text.split()) for option, text in helps.items()}


def _shown(default: object) -> str:
    return " ".join(str(v) for v in default) if isinstance(default, tuple) else str(default)


@pytest.mark.parametrize(
    ("argv", "config_class", "left_out", "command_defaults"),
    [
        (["episode"], MCTSConfig, {"seed"}, {}),
        (["episode"], DecoderSettings, set(), {}),
        (["train"], TrainConfig, set(), {}),
        (["train"], CoLAConfig, {"init_seed", "q_network_num_layers"}, {}),
        (["train"], DecoderSettings, set(), {}),
        (["collect-episodes"], MCTSConfig, {f.name for f in dataclasses.fields(MCTSConfig)} - {
            "rollout_max_tokens", "rollout_policy", "rollout_top_k", "rollout_temperature", "seed", "token_budget",
            "num_simulations", "leaf_value", "leaf_q", "merge_aliases", "root_width", "node_width",
            "exploration_constant", "parallel_expansions", "macro_max_tokens", "macro_td_threshold",
            "reuse_greedy_rollouts", "stop_on_finished_answer"},
         {"rollout_max_tokens": 512, "leaf_value": "oracle"}),
        (["benchmark", "run"], Suite, {"tasks", "algorithms", "env_kwargs"}, {}),
        (["init-decoder"], MicroShape, set(), {}),
    ],
)  # fmt: skip
def test_help_lists_the_options_of_each_config_with_its_defaults(
    argv: list[str], config_class: type, left_out: set[str], command_defaults: dict, capsys
) -> None:
    helps = _option_helps(argv, capsys)
    docs = field_docs(config_class)
    for field in dataclasses.fields(config_class):
        option = option_name(field.name)
        if field.name in left_out:
            assert option not in helps or field.name == "seed", option
            continue
        assert option in helps, option
        assert " ".join(docs[field.name].replace("``", "").split()) in helps[option], option
        if field.default is not dataclasses.MISSING:
            default = command_defaults.get(field.name, field.default)
            assert f"(default: {_shown(default)})" in helps[option], option


def test_config_arguments_refuse_fields_the_config_lacks() -> None:
    with pytest.raises(ValueError, match=r"MCTSConfig has no fields \['num_sims', 'speed'\]"):
        add_config_arguments(argparse.ArgumentParser(), MCTSConfig, fields=("num_sims",), skip=("speed",))


def test_absent_options_keep_the_config_defaults_and_old_option_names_still_work() -> None:
    parser = build_parser()
    episode = parser.parse_args(["episode"])
    assert MCTSConfig(**config_values(episode, MCTSConfig)) == MCTSConfig()
    episode = parser.parse_args(
        ["episode", "--simulations", "3", "--rollout-tokens", "5", "--parallel-expansions", "2"]
    )
    assert config_values(episode, MCTSConfig) == {"num_simulations": 3, "rollout_max_tokens": 5,
                                                  "parallel_expansions": 2, "seed": 0}  # fmt: skip
    collect = parser.parse_args(["collect-episodes", "--out", "x.jsonl"])
    assert config_values(collect, MCTSConfig) == {"rollout_max_tokens": 512, "leaf_value": "oracle"}  # its defaults
    bench = parser.parse_args(["benchmark", "run", "--out", "x", "--seeds", "4", "5", "--budget", "64"])
    assert config_values(bench, Suite) == {"seeds": (4, 5), "budget": 64}
    micro = parser.parse_args(["init-decoder", "--data", "countdown-easy:train", "--out", "x", "--layers", "2"])
    assert MicroShape(**config_values(micro, MicroShape)) == MicroShape(num_layers=2)
    train = parser.parse_args(["train", "--stage", "1a", "--out", "x", "--num-actions", "16", "--scale", "paper"])
    assert config_values(train, CoLAConfig) == {"num_actions": 16, "scale": "paper"}
    assert config_values(train, DecoderSettings) == {}


@pytest.mark.parametrize("env_id", ["CoLA-Countdown-Easy-Train-v0", "CoLA-ALFWorld-Put-Train-v0"])
def test_demos_command_writes_the_tasks_demonstrations(
    env_id: str, data_dir: Path, tokenizer_dir: Path, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "demos" / "rows.jsonl"
    args = ["demos", "--env", env_id, "--data-dir", str(data_dir)]
    assert main([*args, "--limit", "5", "--out", str(path), "--tokenizer", str(tokenizer_dir)]) == 0
    assert f"wrote 5 demonstrations of {env_id}" in capsys.readouterr().out
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    expected = list(itertools.islice(task_for(env_id, data_dir=data_dir).demonstrations(), 5))
    assert [(r["messages"], r["response"]) for r in rows] == [([dict(m) for m in ms], r) for ms, r in expected]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    for row in rows:
        assert (row["prompt"], row["completion"]) == render_exchange(tokenizer, row["messages"], row["response"])
        assert row["prompt"].startswith("<|im_start|>") and row["completion"].endswith("<|im_end|>\n")
    assert main([*args, "--limit", "3"]) == 0  # no --out, no --tokenizer: the rows on standard output
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == [{"messages": r["messages"], "response": r["response"]} for r in rows[:3]]
    assert main([*args, "--limit", "0"]) == 2
    assert "--limit must be >= 1" in capsys.readouterr().err


def test_tokenizer_text_is_the_chat_as_rendered_without_special_tokens() -> None:
    [text] = tokenizer_texts(["countdown-easy:train"], 1)
    [(messages, response)] = itertools.islice(task_for("CoLA-Countdown-Easy-Train-v0").demonstrations(), 1)
    assert text == f"user\n{messages[0]['content']}\nassistant\n{response}\n"


def test_episode_command_plays_a_trained_algorithm_agent(tiny_cola_dir: Path, tmp_path: Path, capsys) -> None:
    env = make_sb3_env("CoLA-Countdown-Easy-v0", n_envs=2, seed=0, model=str(tiny_cola_dir),
                       observation="hidden+prior", max_episode_steps=4)  # fmt: skip
    make_algorithm("ppo_mask", env, n_steps=4, batch_size=8, seed=0).save(tmp_path / "agent.zip")
    env.close()
    args = ["episode", "--env", "CoLA-Countdown-Easy-v0", "--model", str(tiny_cola_dir), "--max-steps", "4"]
    assert main([*args, "--agent", "ppo_mask", "--checkpoint", str(tmp_path / "agent.zip")]) == 0
    out = capsys.readouterr().out
    assert "=== model output ===" in out and "reward: " in out and "after 4 tokens" in out
    assert main([*args, "--agent", "ppo_mask"]) == 2
    assert "--agent ppo_mask plays a trained agent: give its file with --checkpoint" in capsys.readouterr().err
    assert main([*args, "--agent", "greedy", "--checkpoint", str(tmp_path / "agent.zip")]) == 2
    assert "--checkpoint is for a trained agent" in capsys.readouterr().err
