"""Household envs end to end: commands forced through the token twins, the room's answers as
cached prefills, rewards, limits, snapshots, both backends, vector env, SB3, the CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO

import cola_gym  # noqa: F401 - registers the ids
from cola_agents.cli import main
from cola_agents.sb3 import make_sb3_env
from cola_gym.tasks.household import expert_plan, generate_game
from cola_gym.tasks.household.task import (
    MAX_COMMAND_CHARS,
    HouseholdTask,
    command_of,
    expert_chats,
    expert_transcript,
    labelled_chats,
)
from cola_gym.training.data import _chat_example


@pytest.fixture
def make_env(tiny_cola_dir: Path):
    def build(env_id: str = "CoLA-ALFWorld-Token-v0", **kwargs: Any) -> gym.Env:
        return gym.make(env_id, model=str(tiny_cola_dir), **kwargs)

    return build


def command(env: gym.Env, text: str) -> tuple[list[float], bool, bool, dict]:
    """Steps the tokens of ``text`` then the end-of-turn token; stops when the episode ends."""
    tokenizer = env.unwrapped.model.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    rewards, terminated, truncated, info = [], False, False, {}
    for token in ids:
        _, reward, terminated, truncated, info = env.step(token)
        rewards.append(float(reward))
        if terminated or truncated:
            break
    return rewards, terminated, truncated, info


def game_of(env: gym.Env):
    return env.unwrapped.episode.task_state.game


def test_the_expert_wins_through_the_env_with_reward_one(make_env) -> None:
    env = make_env("CoLA-ALFWorld-Heat-Token-v0")
    _, info = env.reset(seed=3)
    game = game_of(env)
    assert info["task_type"] == "pick_heat_then_place_in_recep" and info["turns"] == 0 and not info["won"]
    assert info["goal"] == game.goal.sentence and "help" in info["admissible_commands"]
    plan = expert_plan(game)
    all_rewards = []
    for n, line in enumerate(plan, start=1):
        rewards, terminated, truncated, info = command(env, line)
        all_rewards += rewards
        assert info["turns"] == n and info["command"] == line and not truncated
        assert terminated == (n == len(plan))
    assert all_rewards[-1] == 1.0 and sum(all_rewards) == 1.0
    assert info["won"] and info["is_success"]
    text = info["text"]
    assert all(line in text for line in plan) and "You heat the" in text


def test_the_env_renders_exactly_the_demonstrations(make_env) -> None:
    """Forced expert play gives, token for token, the chats the model is trained on."""
    env = make_env()
    env.reset(options={"task_index": 4})
    game = game_of(env)
    chats = list(expert_chats(game))
    tokenizer = env.unwrapped.model.tokenizer
    for _, line in chats[:-1]:
        command(env, line)
    messages, line = chats[-1]
    example = _chat_example(tokenizer, messages, line, 4096)
    prompt_ids = list(env.unwrapped.prompt_ids)
    consumed = prompt_ids + list(tokenizer(env.unwrapped.episode.transcript, add_special_tokens=False)["input_ids"])
    assert tokenizer.decode(example.ids[: example.response_start]) == tokenizer.decode(consumed)
    transcript = expert_transcript(game)
    assert transcript[-1] == {"role": "assistant", "content": line} and len(transcript) == 2 * len(chats) + 1


@pytest.mark.parametrize(
    ("text", "feedback"),
    [
        ("go to nowhere 1", "Nothing happens."),
        ("dance", "Nothing happens."),
        ("", "Nothing happens."),
        ("inventory", "You are not carrying anything."),
        ("  look  ", "You are in the middle of a room. Looking quickly around you, you see nothing."),
        ("LOOK.", "Nothing happens."),  # ALFWorld 0.4 plays commands exactly as it lists them
        ("put apple 1 in fridge 1", "Nothing happens."),
    ],
)
def test_any_text_is_a_command_and_gets_an_answer(make_env, text: str, feedback: str) -> None:
    env = make_env()
    env.reset(seed=0)
    rewards, terminated, _, info = command(env, text)
    assert not terminated and sum(rewards) == 0.0
    assert info["feedback"] == feedback and info["turns"] == 1
    assert info["text"].count(feedback) >= 1


def test_a_turn_ends_at_the_line_break_or_a_length_cap(make_env) -> None:
    assert command_of("go to fridge 1\nand then something") == "go to fridge 1"
    assert command_of("\n\n  put apple 1 on countertop 1\n") == "put apple 1 on countertop 1"
    assert command_of("\n\n  put apple 1 on countertop 1\n", lenient=True) == "move apple 1 to countertop 1"
    env = make_env()
    env.reset(seed=0)
    tokenizer = env.unwrapped.model.tokenizer
    for token in tokenizer("look\n", add_special_tokens=False)["input_ids"]:
        *_, info = env.step(token)
    assert info["turns"] == 1 and info["command"] == "look"
    count = 0
    for token in tokenizer("a" * 400, add_special_tokens=False)["input_ids"] * 2:
        *_, info = env.step(token)
        count += 1
        if info["turns"] == 2:
            break
    assert info["feedback"] == "Nothing happens." and count < MAX_COMMAND_CHARS


def test_the_command_limit_ends_the_episode_without_reward(make_env) -> None:
    env = make_env(max_commands=3)
    env.reset(seed=0)
    outcomes = [command(env, "look") for _ in range(3)]
    assert [o[1] for o in outcomes] == [False, False, True]
    rewards, terminated, truncated, info = outcomes[-1]
    assert terminated and not truncated and sum(rewards) == 0.0 and info["turns"] == 3 and not info["is_success"]
    with pytest.raises(Exception, match="ended"):
        env.step(0)


def test_lenient_commands_forgive_case_spacing_and_the_put_form(make_env) -> None:
    env = make_env(lenient_commands=True)
    env.reset(seed=0)
    *_, info = command(env, "  LOOK.  ")
    assert info["feedback"].startswith("You are in the middle of a room") and info["command"] == "look"
    strict = make_env()
    strict.reset(seed=0)
    *_, info = command(strict, "  LOOK.  ")
    assert info["feedback"] == "Nothing happens." and info["command"] == "LOOK."


def test_invalid_commands_are_counted_and_can_be_penalised(make_env) -> None:
    env = make_env(max_commands=4, invalid_command_penalty=0.1)
    env.reset(options={"task_index": 0})
    plan = expert_plan(game_of(env))
    rewards, *_, info = command(env, "fly to the moon")
    assert (
        rewards[-1] == pytest.approx(-0.1) and info["invalid_commands"] == 1 and info["feedback"] == "Nothing happens."
    )
    rewards, *_, info = command(env, plan[0])  # a valid command: no penalty
    assert sum(rewards) == 0.0 and info["invalid_commands"] == 1
    plain = make_env(max_commands=4)
    plain.reset(options={"task_index": 0})
    rewards, *_, info = command(plain, "fly to the moon")
    assert sum(rewards) == 0.0 and info["invalid_commands"] == 1  # off unless asked for
    with pytest.raises(ValueError, match="invalid_command_penalty must be >= 0"):
        make_env(invalid_command_penalty=-1.0)


def test_the_anchor_is_the_world_state_a_turn_starts_from(make_env) -> None:
    env = make_env()
    env.reset(options={"task_index": 0})
    game = game_of(env)
    plan = expert_plan(game)
    *_, looked = command(env, "look")  # changes nothing in the world
    assert looked["anchor"] == (game.name, game.start) and looked["turn"] == 1
    *_, moved = command(env, plan[0])
    assert moved["anchor"] != looked["anchor"] and moved["turn"] == 2
    other = make_env()
    other.reset(options={"task_index": 0})
    *_, same = command(other, plan[0])  # another path to the same world: the same anchor
    assert same["anchor"] == moved["anchor"] and same["turn"] == 1
    assert pickle.loads(pickle.dumps(moved["anchor"])) == moved["anchor"]


def test_snapshots_restore_the_world(make_env) -> None:
    env = make_env()
    env.reset(options={"task_index": 0})
    plan = expert_plan(game_of(env))
    command(env, plan[0])
    snapshot = env.unwrapped.snapshot()
    *_, after_second = command(env, plan[1])
    command(env, "look")
    env.unwrapped.restore(snapshot)
    *_, again = command(env, plan[1])
    assert again["feedback"] == after_second["feedback"] and again["turns"] == 2
    assert again["admissible_commands"] == after_second["admissible_commands"]


def test_reset_options(make_env) -> None:
    env = make_env()
    _, info = env.reset(options={"task_index": 7})
    assert info["task_index"] == 7 and info["goal"] == generate_game("valid_seen", 7).goal.sentence
    _, info = env.reset(options={"game_index": 7})
    assert info["task_index"] == 7
    custom = generate_game("train", 123)
    _, info = env.reset(options={"game": custom})
    assert info["goal"] == custom.goal.sentence and info["task_index"] == -1
    with pytest.raises(ValueError, match="Game"):
        env.reset(options={"game": "train/123"})
    with pytest.raises(ValueError, match="either"):
        env.reset(options={"game": custom, "task_index": 1})
    with pytest.raises(ValueError, match=r"\[0, 140\)"):
        env.reset(options={"task_index": 140})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"room": 1})


def test_ids_and_task_arguments() -> None:
    ids = [i for i in gym.registry if i.startswith("CoLA-ALFWorld") and "Token" not in i]
    assert len(ids) == 21
    micro = sorted(i for i in gym.registry if i.startswith("CoLA-Micro-ALFWorld"))
    assert micro == sorted(f"CoLA-Micro-ALFWorld{s}{t}-v0" for s in ("", "-Unseen", "-Train") for t in ("", "-Token"))
    assert HouseholdTask(task_type="heat").task_type == "pick_heat_then_place_in_recep"
    assert HouseholdTask(split="valid_unseen").num_tasks == 134
    for bad, message in [({"split": "test"}, "split"), ({"task_type": "slice"}, "task_type"),
                         ({"max_commands": 0}, "max_commands"), ({"backend": "unity"}, "backend")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            HouseholdTask(**bad)
    task = HouseholdTask(split="train", task_type="cool")
    assert pickle.loads(pickle.dumps(task)).game(5) == task.game(5)


def test_the_alfworld_backend_plays_the_same_episode(make_env) -> None:
    pytest.importorskip("alfworld")
    env = make_env("CoLA-ALFWorld-Token-v0", backend="alfworld")
    native = make_env("CoLA-ALFWorld-Token-v0")
    _, info = env.reset(options={"task_index": 2})
    _, native_info = native.reset(options={"task_index": 2})
    assert info["text"] == native_info["text"] and info["admissible_commands"] == native_info["admissible_commands"]
    plan = expert_plan(game_of(env))
    command(env, plan[0])
    snapshot = env.unwrapped.snapshot()
    command(env, "look")
    env.unwrapped.restore(snapshot)  # the engine replays the command history
    for line in plan[1:]:
        rewards, terminated, _, info = command(env, line)
    assert terminated and rewards[-1] == 1.0 and info["won"]


def test_real_alfworld_game_files(make_env, tmp_path: Path, monkeypatch) -> None:
    """Game files in ALFWorld's folder layout, played through the env by ALFWorld's engine."""
    pytest.importorskip("alfworld")
    from cola_gym.tasks.household.alfworld import tw_pddl_game

    games = [generate_game("valid_unseen", i) for i in (0, 3)]
    for game in games:
        folder = tmp_path / "json_2.1.1" / f"{game.goal.task_type}-Obj-None-Recep-10" / "trial_T0"
        folder.mkdir(parents=True)
        (folder / "game.tw-pddl").write_text(json.dumps(tw_pddl_game(game)))
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    env = make_env(backend="alfworld", game_files="json_2.1.1", task_type="heat")
    assert env.unwrapped.task.num_tasks == 1
    _, info = env.reset(options={"task_index": 0})
    assert info["task_type"] == "pick_heat_then_place_in_recep" and info["goal"] == games[1].goal.sentence
    assert "expert plan" not in env.unwrapped.task.describe(env.unwrapped.episode.task_state)
    for line in expert_plan(games[1]):
        rewards, terminated, _, info = command(env, line)
    assert terminated and rewards[-1] == 1.0 and info["won"]
    assert HouseholdTask(game_files="json_2.1.1").game(0).goal == games[0].goal  # native by default
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HouseholdTask(backend="alfworld", game_files="nowhere")
    with pytest.raises(ValueError, match="none of the 2"):
        HouseholdTask(backend="alfworld", game_files=str(tmp_path), task_type="cool")


def test_vector_env_and_sb3_training(tiny_cola_dir: Path) -> None:
    vector = gym.make_vec(
        "CoLA-ALFWorld-v0", num_envs=3, vectorization_mode="vector_entry_point", model=str(tiny_cola_dir)
    )
    _, infos = vector.reset(seed=0)
    assert len(set(infos["goal"])) > 1
    for _ in range(5):
        vector.step(vector.action_space.sample())
    env = make_sb3_env("CoLA-ALFWorld-Put-Train-v0", n_envs=2, seed=0, model=str(tiny_cola_dir), max_episode_steps=12)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0)
    model.learn(64)
    assert len(model.ep_info_buffer) > 0 and "is_success" in model.ep_info_buffer[0]


def test_episode_and_demonstration_commands(tiny_cola_dir: Path, tmp_path: Path, capsys) -> None:
    code = main(["episode", "--env", "CoLA-ALFWorld-v0", "--model", str(tiny_cola_dir), "--max-steps", "6",
                 "--task-index", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "expert plan: " in out and "Welcome to TextWorld" in out
    path = tmp_path / "demos.jsonl"
    assert main(["demos", "--env", "CoLA-ALFWorld-Clean-Train-v0", "--limit", "40", "--out", str(path)]) == 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 40 and all("clean" in r["messages"][1]["content"] for r in rows)
    first = rows[0]["messages"]
    assert first[0]["role"] == "system" and first[1]["content"].startswith("-= Welcome")
    plan = expert_plan(generate_game("train", 0, "clean"))
    assert [r["response"] for r in rows[: len(plan)]] == plan and len(rows[len(plan)]["messages"]) == 2
    assert main(["demos", "--env", "CoLA-ALFWorld-Clean-Train-v0", "--limit", "0", "--out", str(path)]) == 2


def test_searching_demonstrations_and_dagger_rows(
    tiny_cola_dir: Path, tokenizer_dir: Path, tmp_path: Path, capsys
) -> None:
    from transformers import AutoTokenizer

    from cola_gym.tasks.household.searcher import searching_plan
    from cola_gym.training import TextSource, load_examples

    path = tmp_path / "searching.jsonl"
    argv = ["demos", "--env", "CoLA-ALFWorld-Put-Train-v0", "--limit", "12", "--out", str(path)]
    assert main([*argv, "--task-arg", "demo_expert=searching"]) == 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    plan = searching_plan(generate_game("train", 0, "put"))
    assert [r["response"] for r in rows[: len(plan)]] == plan
    capsys.readouterr()
    assert main([*argv, "--task-arg", "demo_expert=psychic"]) == 2
    assert "demo_expert must be one of" in capsys.readouterr().err
    assert main([*argv, "--task-arg", "searching"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err

    dagger = tmp_path / "dagger.jsonl"  # the tiny model's prior plays 3 games of 3 commands; the expert labels them
    assert main(["demos", "--env", "CoLA-ALFWorld-Put-Train-v0", "--limit", "3", "--dagger", "--model",
                 str(tiny_cola_dir), "--out", str(dagger), "--task-arg", "max_commands=3"]) == 0  # fmt: skip
    capsys.readouterr()
    labelled = [json.loads(line) for line in dagger.read_text().splitlines()]
    for row in labelled:  # the chat so far ends with the room's answer; the label is one command
        assert row["messages"][-1]["role"] == "user" and len(row["messages"]) % 2 == 0
        assert row["response"] and "\n" not in row["response"]
    starts = [row for row in labelled if len(row["messages"]) == 2]
    assert len(starts) == 3 and all(row["response"].startswith("go to ") for row in starts)  # nothing seen yet
    assert len(labelled) == 3 * 4  # no game won: 3 commands each, 4 states labelled
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    source = TextSource(str(dagger), prompt_field="messages", response_field="response")
    assert len(load_examples([source], tokenizer, 1024)) == len(labelled)


def test_grpo_step_credit_compares_household_turns_from_the_same_world(tiny_cola_dir: Path) -> None:
    from cola_agents.algorithms import GRPO

    env = make_sb3_env("CoLA-ALFWorld-Put-Train-v0", n_envs=4, seed=0, model=str(tiny_cola_dir),
                       max_episode_steps=96, max_commands=4, invalid_command_penalty=0.1)  # fmt: skip
    agent = GRPO("MlpPolicy", env, group_size=4, step_credit=1.0, seed=0)
    agent.learn(96)
    # the tiny model's commands are mostly invalid: its turns keep starting from the game's first world
    assert agent.turns_sharing_an_anchor > 0.5


def test_mixed_demonstrations_mix_experts_and_recoveries_and_win() -> None:
    from cola_gym.tasks.household import is_won, step
    from cola_gym.tasks.household.searcher import searching_plan, slipping_plan

    task = HouseholdTask(split="train", demo_expert="mixed", max_commands=30)
    styles = {"oracle": 0, "searching": 0, "other": 0}
    for index in range(60):
        game = task.game(index)
        commands = task.demo_commands(game, index)
        assert commands == task.demo_commands(game, index)  # the same data every run
        state = game.start
        for c in commands:
            state = step(game, state, c).state
        assert is_won(game, state) or len(commands) == 30
        if commands == expert_plan(game):
            styles["oracle"] += 1
        elif commands == searching_plan(game):
            styles["searching"] += 1
        else:
            styles["other"] += 1
    assert all(count >= 8 for count in styles.values()), styles
    game = task.game(0)
    assert slipping_plan(game, np.random.default_rng(0), slip_rate=0.0) == searching_plan(game)
    with pytest.raises(ValueError, match="slip_rate"):
        slipping_plan(game, np.random.default_rng(0), slip_rate=1.0)


def test_mixed_demonstrations_never_teach_a_slip() -> None:
    from cola_gym.tasks.household.searcher import expert_labels

    task = HouseholdTask(split="train", demo_expert="mixed", max_commands=30)
    slips = 0
    for index in range(40):
        game = task.game(index)
        commands, targets = task.demo_game(game, index)
        expert = expert_labels(game, commands)
        for turn, (command, target) in enumerate(zip(commands, targets, strict=True)):
            if target is None:  # a slip: not the searching expert's command in that state
                slips += 1
                assert command != expert[turn]
            else:
                assert target == command
        examples = list(labelled_chats(game, commands, targets))
        assert [target for _, target in examples] == [t for t in targets if t is not None]
        # every example's chat holds the game so far, slips included
        for chat, _ in examples:
            turn = (len(chat) - 2) // 2
            assert [m["content"] for m in chat[2::2]] == commands[:turn]
    assert slips >= 10


def test_evaluation_reports_commands_per_game_and_invalid_rate(tiny_cola_dir: Path) -> None:
    from cola_agents import RandomAgent
    from cola_agents.evaluation import evaluate

    result = evaluate(RandomAgent(seed=0), "CoLA-ALFWorld-Token-v0", [0, 1], n_envs=2, model=str(tiny_cola_dir),
                      max_commands=2, max_episode_steps=400)  # fmt: skip
    summary = result.summary()
    turns = [i["turns"] for i in result.infos]
    assert summary["commands_per_game"] == pytest.approx(np.mean(turns))
    invalid = sum(i["invalid_commands"] for i in result.infos) / sum(turns)
    assert summary["invalid_command_rate"] == pytest.approx(invalid) and invalid > 0  # random text is rarely a command


def test_micro_household_ids_play_on_the_shipped_micro_model() -> None:
    from cola_agents import PriorAgent
    from cola_agents.evaluation import evaluate
    from cola_gym.registration import entry

    model = entry("CoLA-Micro-ALFWorld-v0").model
    assert model is not None and Path(model).name == "micro-household"
    model_dir = Path(model)
    size = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    assert size <= 15e6, size
    env = gym.make("CoLA-Micro-ALFWorld-Unseen-v0")
    assert env.unwrapped.model.name_or_path == str(model_dir) and env.unwrapped.task.max_commands == 30
    result = evaluate(PriorAgent(), "CoLA-Micro-ALFWorld-v0", [0, 1], n_envs=2, track_policy=True, max_commands=2)
    for info in result.infos:  # the prior writes the game's language: its first command is an admissible go to
        assert info["commands"][0].startswith("go to ") and info["invalid_commands"] < 2, info["commands"]
