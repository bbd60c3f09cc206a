"""TrainConfig validation and schedules; training data sources."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from cola_gym.errors import DataFormatError, DataNotFoundError
from cola_gym.training import TextSource, TrainConfig, load_examples


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    config = TrainConfig(stage="1a", steps=110, warmup_steps=10, learning_rate=1e-3, min_learning_rate=1e-4)
    rates = [config.learning_rate_at(step) for step in range(110)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert rates[-1] == pytest.approx(1e-4, rel=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))
    assert TrainConfig(stage="2").peak_learning_rate == 5e-6  # the release's stage-2 rate


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stage": "3"}, "stage must be one of"),
        ({"stage": "1a", "steps": 0}, "steps must be >= 1"),
        ({"stage": "1a", "lora_rank": 8}, "lora_rank applies to stage 2 only"),
        ({"stage": "2", "fta_actions": "random"}, "FTA-I"),
        ({"stage": "1a", "gumbel_tau": 0.0}, "gumbel_tau must be > 0"),
        ({"stage": "1a", "seq_len": 1}, "seq_len must be >= 2"),
    ],
)
def test_invalid_configs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_math_examples_are_prompted_exactly_as_the_env_prompts(tiny_cola_dir: Path, data_dir: Path, tiny_cola) -> None:
    examples = load_examples([TextSource("gsm8k:test", max_examples=3)], tiny_cola.tokenizer, 1024, data_dir)
    env = gym.make("CoLA-GSM8K-v0", model=str(tiny_cola_dir), data_dir=str(data_dir))
    env.reset(options={"problem_index": 1})
    prompt_ids = tiny_cola.tokenizer(env.unwrapped.prompt_text, add_special_tokens=False)["input_ids"]
    example = examples[1]
    assert example.ids[: example.response_start].tolist() == prompt_ids
    response = tiny_cola.tokenizer.decode(example.ids[example.response_start :].tolist())
    assert "<<" not in response and response.rstrip().endswith("The final answer is $\\boxed{3}$.<|im_end|>")


def test_jsonl_and_text_sources(tiny_cola, tmp_path: Path) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text("\n".join(json.dumps({"q": f"What is {i} + 1?", "a": f"It is {i + 1}."}) for i in range(5)))
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "A short document."}) + "\n\n" + json.dumps({"text": "Another one."}))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("word " * 300)
    tokenizer = tiny_cola.tokenizer
    pairs = load_examples([TextSource(str(chat), prompt_field="q", response_field="a")], tokenizer, 64)
    assert len(pairs) == 5 and all(0 < e.response_start < len(e.ids) for e in pairs)
    texts = load_examples([TextSource(str(docs), text_field="text")], tokenizer, 64)
    assert len(texts) == 2 and all(e.response_start == 0 for e in texts)
    pieces = load_examples([TextSource(str(corpus))], tokenizer, 64)
    assert len(pieces) >= 4 and all(len(e.ids) <= 64 for e in pieces)


def test_bad_sources_give_clear_errors(tiny_cola, tmp_path: Path) -> None:
    tokenizer = tiny_cola.tokenizer
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_examples([TextSource(str(tmp_path / "missing.txt"))], tokenizer, 64)
    with pytest.raises(ValueError, match="either text_field, or prompt_field and response_field"):
        TextSource(str(tmp_path / "x.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no text field"}) + "\n")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: field 'text'"):
        load_examples([TextSource(str(bad), text_field="text")], tokenizer, 64)
    with pytest.raises(ValueError, match="unknown training source 'nope:train'"):
        load_examples([TextSource("nope:train")], tokenizer, 64)
    chats = tmp_path / "chats.jsonl"
    good = {"messages": [{"role": "user", "content": "Hi"}], "response": "Hello."}
    chats.write_text(json.dumps(good) + "\n" + json.dumps({"messages": [{"role": "robot", "content": "?"}],
                                                           "response": "x"}))  # fmt: skip
    with pytest.raises(DataFormatError, match=r"chats\.jsonl:2: field 'messages' must be a non-empty list"):
        load_examples([TextSource(str(chats), prompt_field="messages", response_field="response")], tokenizer, 64)


def test_every_config_field_is_a_train_option_with_its_doc() -> None:
    import dataclasses

    from cola_agents.cli import build_parser

    parser = build_parser()
    options = ["--keep-checkpoints", "5", "--lr", "0.5", "--no-hidden-cache", "--fta-actions", "policy"]
    args = parser.parse_args(["train", "--stage", "1b", "--out", "x", *options, "--min-learning-rate", "0.1"])
    assert (args.keep_checkpoints, args.learning_rate, args.use_hidden_cache) == (5, 0.5, False)
    assert (args.fta_actions, args.min_learning_rate) == ("policy", 0.1)
    assert not hasattr(args, "steps")  # absent options keep the config's own default
    train = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))
    options = {o for action in train._actions for o in action.option_strings}
    helps = {action.dest: action.help or "" for action in train._actions}
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in options, field.name
        assert len(helps[field.name]) > 10, field.name  # from the docstring
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--stage", "9", "--out", "x"])


def test_one_stage_object_per_stage() -> None:
    from cola_gym.training.config import STAGES
    from cola_gym.training.stages import STAGE_OBJECTIVES

    assert tuple(STAGE_OBJECTIVES) == STAGES
    assert [stage.data for stage in STAGE_OBJECTIVES.values()] == ["text", "text", "text", "text", "episodes"]
    assert all(stage.metrics for stage in STAGE_OBJECTIVES.values())


def test_training_data_comes_from_the_task(tiny_cola, data_dir: Path) -> None:
    by_name = load_examples([TextSource("gsm8k:test", max_examples=2)], tiny_cola.tokenizer, 256, data_dir)
    by_id = load_examples([TextSource("CoLA-GSM8K-v0", max_examples=2)], tiny_cola.tokenizer, 256, data_dir)
    assert [e.ids.tolist() for e in by_name] == [e.ids.tolist() for e in by_id]
    with pytest.raises(DataFormatError, match="no worked solutions"):
        load_examples([TextSource("math500:test", max_examples=2)], tiny_cola.tokenizer, 256, data_dir)


def test_responses_only_masks_prompt_targets_in_stages_1a_and_1b() -> None:
    from cola_gym.training.objectives import collate

    rows = [(np.arange(10), None, ((6, 10),))]  # a 6-token prompt, a 4-token response
    for config, targets in ((TrainConfig("1b"), 9), (TrainConfig("1b", responses_only=True), 4), (TrainConfig("2"), 4)):
        assert int(collate(rows, config.counts_only_responses).loss_mask.sum()) == targets


def test_whole_chats_fold_a_games_turns_into_one_example_with_the_same_targets(tiny_cola, data_dir: Path) -> None:
    from cola_gym.training.data import merge_chat_turns
    from cola_gym.training.objectives import collate

    turns = load_examples([TextSource("CoLA-ALFWorld-Train-v0", max_examples=40)], tiny_cola.tokenizer, 4096)
    games = merge_chat_turns(turns)
    assert 1 < len(games) < len(turns) / 3  # games of several commands each
    assert sum(len(g.response_spans) for g in games) == len(turns)

    def targets(examples):  # every counted (context, next token) pair
        found = set()
        for e in examples:
            mask = collate([(e.ids, None, e.response_spans)], only_responses=True).loss_mask[0]
            found |= {tuple(e.ids[: t + 2].tolist()) for t in np.flatnonzero(mask.numpy())}
        return found

    assert targets(games) == targets(turns)
    assert sum(len(g.ids) for g in games) < sum(len(t.ids) for t in turns) / 3
    single = load_examples([TextSource("gsm8k:test", max_examples=4)], tiny_cola.tokenizer, 256, data_dir)
    assert all(a is b for a, b in zip(merge_chat_turns(single), single, strict=True))  # nothing chains


def test_collate_counts_every_response_span() -> None:
    from cola_gym.training.objectives import collate

    rows = [(np.arange(12), None, ((3, 5), (9, 12)))]
    mask = collate(rows, only_responses=True).loss_mask[0]
    assert np.flatnonzero(mask.numpy()).tolist() == [2, 3, 8, 9, 10]
    assert int(collate(rows, only_responses=False).loss_mask.sum()) == 11
