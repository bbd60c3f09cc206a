"""Micro decoders from scratch: tokenizer, random Llama, stage lm, and the shipped micro tier."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import cola_gym
from cola_agents.agents import PriorAgent
from cola_agents.cli import main
from cola_agents.evaluation import evaluate
from cola_gym.model import CoLAModel
from cola_gym.registration import pretrained_path
from cola_gym.training import CoLATrainer, TrainConfig
from cola_gym.training.data import TextSource, load_examples, task_chats
from cola_gym.training.micro import MicroShape, init_decoder, parameter_count, train_tokenizer

MICRO = Path(pretrained_path("micro-countdown"))
MICRO_IDS = ["CoLA-Micro-Countdown-Easy-v0", "CoLA-Micro-Countdown-Easy-Train-v0", "CoLA-Micro-Countdown-Medium-v0",
             "CoLA-Micro-Countdown-Medium-Train-v0"]  # fmt: skip


def _texts(count: int = 300) -> list[str]:
    chats = itertools.islice(task_chats("micro-countdown-easy:train", None), count)
    return [f"user\n{m[0]['content']}\nassistant\n{r}\n" for m, r in chats]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(_texts(), vocab_size=300)


@pytest.mark.parametrize("text", ["Numbers: 3 5 2. Target: 16.", "héllo 🙂", "\x00<|im_end|>", "", "x" * 1000])
def test_byte_level_tokenizer_round_trips_any_text(tokenizer, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert all(0 <= i < len(tokenizer) for i in ids)


def test_tokenizer_has_chatml_and_compresses_the_task(tokenizer) -> None:
    assert len(tokenizer) <= 300 and tokenizer.eos_token == "<|im_end|>"
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Numbers: 3 5 2. Target: 16."}],
                                             tokenize=False, add_generation_prompt=True)  # fmt: skip
    assert rendered == "<|im_start|>user\nNumbers: 3 5 2. Target: 16.<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert len(ids) < len(rendered) / 2  # the trained merges shorten the task's text
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["a"], vocab_size=100)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"hidden_size": 0}, "hidden_size"), ({"hidden_size": 30, "num_heads": 4}, "multiple")]
)
def test_bad_shapes_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        MicroShape(**kwargs)


def test_stage_lm_trains_a_decoder_from_scratch(tokenizer, tmp_path: Path) -> None:
    shape = MicroShape(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=128)
    path = init_decoder(tmp_path / "decoder", tokenizer, shape, seed=0)
    embeddings = len(tokenizer) * 32
    assert parameter_count(path) == embeddings + 1 * (4 * 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32
    model = CoLAModel.from_pretrained(str(path))
    examples = load_examples([TextSource("micro-countdown-easy:train", max_examples=64)], model.tokenizer, 64)
    heads = {k: v.clone() for k, v in model.policy.state_dict().items()}
    config = TrainConfig(stage="lm", steps=30, batch_size=8, seq_len=64, learning_rate=3e-3, warmup_steps=3,
                         log_every=5, checkpoint_every=30)  # fmt: skip
    CoLATrainer(model, config, examples, tmp_path / "lm", show_progress=False).train()
    card = json.loads((tmp_path / "lm" / "final" / "training.json").read_text())
    assert card[-1]["stage"] == "lm"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "lm" / "tensorboard"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss/lm_ce")]
    assert losses[0] > 0.9 * np.log(len(tokenizer)) and losses[-1] < 0.75 * losses[0], losses  # from a uniform guess
    assert all(torch.equal(heads[k], v) for k, v in model.policy.state_dict().items())  # heads untouched
    assert (tmp_path / "lm" / "final" / "decoder").is_dir()  # the decoder is stored with the heads


def test_init_decoder_command(tmp_path: Path, capsys) -> None:
    out = tmp_path / "micro"
    args = ["init-decoder", "--data", "countdown-easy:train", "--examples", "50", "--vocab-size", "300",
            "--hidden-size", "32", "--layers", "1", "--heads", "2", "--intermediate-size", "64",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert "Llama decoder" in capsys.readouterr().out
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert main([*args[:-2], "--examples", "0", "--out", str(out)]) == 2


def test_micro_tier_ids_load_the_shipped_micro_model() -> None:
    assert set(MICRO_IDS) <= set(cola_gym.ENV_IDS)
    size = sum(p.stat().st_size for p in MICRO.rglob("*") if p.is_file())
    assert size <= 10e6, size
    assert parameter_count(MICRO / "decoder") < 5e6
    env = gym.make("CoLA-Micro-Countdown-Easy-v0")
    obs, _ = env.reset(options={"task_index": 0})
    assert env.unwrapped.model.name_or_path == str(MICRO)
    assert obs.shape == (env.unwrapped.model.hidden_size,)
    prompt = env.unwrapped.task.prompt(env.unwrapped.task.puzzle(0))[0]["content"]
    assert prompt.startswith("Numbers: ") and "Target: " in prompt


def test_micro_prior_solves_some_easy_puzzles_and_answers_in_format() -> None:
    result = evaluate(PriorAgent(), "CoLA-Micro-Countdown-Easy-v0", range(16), n_envs=8,
                      track_policy=True)  # fmt: skip
    statuses = [info["status"] for info in result.infos]
    assert sum(s != "no_answer" for s in statuses) >= 12, statuses  # it writes <answer> tags
    assert 0 < result.success_rate < 1, statuses  # room to learn, and something to start from
