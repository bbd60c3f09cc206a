"""The default model: ``gym.make`` with no model argument uses the shipped heads on SmolLM2-135M."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import torch

import cola_gym  # noqa: F401 - registers the ids
from cola_agents import PriorAgent
from cola_gym.tasks.math.grading import grade_text


def test_default_model_runs_a_graded_episode(default_decoder_dir: Path, data_dir: Path) -> None:
    env = gym.make("CoLA-GSM8K-v0", data_dir=str(data_dir), max_episode_steps=300, track_policy=True)
    model = env.unwrapped.model
    assert model.decoder.config.num_hidden_layers == 30  # SmolLM2-135M-Instruct
    assert model.decoder_name_or_path == "embedded:SmolLM2-135M-Instruct"
    assert env.observation_space.shape == (576,)
    obs, _ = env.reset(seed=0, options={"problem": "What is 2 + 3?", "answer": "5"})
    agent = PriorAgent()
    agent.bind(env)
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(agent.predict(obs, deterministic=True)[0])
    assert terminated, "the BC policy ends its answer well within 300 tokens"
    assert len(info["text"].split()) > 5
    grade = grade_text(info["text"], "5", "gsm8k")
    assert (info["answer"], info["is_correct"], reward) == (
        grade.answer or "",
        grade.is_correct,
        float(grade.is_correct),
    )


def test_the_shipped_world_model_follows_its_actions(default_decoder_dir: Path, data_dir: Path) -> None:
    env = gym.make("CoLA-Math500-v0", data_dir=str(data_dir))
    env.reset(options={"problem_index": 0})
    model, state = env.unwrapped.model, env.unwrapped.decoding_state
    tokens = model.next_tokens(state.select([0] * model.num_actions), torch.arange(model.num_actions))
    assert len(set(tokens.tolist())) >= 3  # untrained heads give one token for every code


def test_the_countdown_ids_default_to_their_warm_started_model(default_decoder_dir: Path) -> None:
    env = gym.make("CoLA-Countdown-Easy-v0", track_policy=True)
    model = env.unwrapped.model
    assert Path(model.name_or_path).name == "smollm2-135m-instruct-countdown"
    assert model.decoder_adapter is not None  # the LoRA adapter is merged into the decoder
    obs, info = env.reset(options={"numbers": [3, 5, 2], "target": 16})
    agent = PriorAgent()
    agent.bind(env)
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(agent.predict(obs, deterministic=True)[0])
    assert terminated and info["text"].endswith("</answer>"), info["text"]  # it writes the task's format
    assert info["status"] != "no_answer" and reward in (0.1, 1.0)


def test_the_household_ids_default_to_their_warm_started_model(default_decoder_dir: Path) -> None:
    env = gym.make("CoLA-ALFWorld-v0", track_policy=True)
    model = env.unwrapped.model
    assert Path(model.name_or_path).name == "smollm2-135m-instruct-household"
    assert model.decoder_adapter is not None
    obs, info = env.reset(options={"task_index": 0})
    agent = PriorAgent()
    agent.bind(env)
    while info["turns"] < 2:
        obs, _, _, truncated, info = env.step(agent.predict(obs, deterministic=True)[0])
        assert not truncated
    # it writes commands of the game's language: the first one is admissible
    first = info["text"].split("<|im_end|>")[0].strip()
    assert first.startswith("go to ") and "Nothing happens." not in info["text"].split("<|im_end|>")[1], info["text"]
