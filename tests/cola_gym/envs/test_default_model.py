"""The embedded default model: ``gym.make`` with no model argument runs a graded episode."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.rewards.math import grade_text


def test_default_model_runs_a_graded_episode(default_decoder_dir: Path, data_dir: Path) -> None:
    env = gym.make("CoLA-GSM8K-v0", data_dir=str(data_dir), max_episode_steps=400)
    assert env.unwrapped.model.decoder.config.num_hidden_layers == 30  # SmolLM2-135M-Instruct
    assert env.observation_space.shape == (576,)
    env.reset(seed=0, options={"problem": "What is 2 + 3?", "answer": "5"})
    terminated = truncated = False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert terminated, "SmolLM2 ends its answer with an end-of-turn token well within 400 tokens"
    assert len(info["text"].split()) > 5 and info["answer"]
    grade = grade_text(info["text"], "5", "gsm8k")
    assert (info["answer"], info["is_correct"], reward) == (grade.answer, grade.is_correct, float(grade.is_correct))
