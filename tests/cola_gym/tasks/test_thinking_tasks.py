"""Thinking-prompt tasks end to end: Countdown, reasoning-gym and the math envs' think style.

Exact texts are forced through the token twins (each action is a token id), so rewards,
termination and info are checked on what a model could really write.
"""

from __future__ import annotations

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
from cola_gym.registration import load_task_specs, registry
from cola_gym.tasks.reasoning.task import ReasoningGymTask
from cola_gym.text.answers import THINK_INSTRUCTION

REASONING_IDS = [i for i in registry().ladder if registry()[i].family == "reasoning"]


@pytest.fixture
def make(tiny_cola_dir: Path, data_dir: Path):
    def make_env(env_id: str, **kwargs: Any) -> gym.Env:
        return gym.make(env_id, model=str(tiny_cola_dir), data_dir=str(data_dir), **kwargs)

    return make_env


def _write(env: gym.Env, text: str, eos: bool = False) -> tuple[list[float], bool, bool, dict]:
    """Steps the token ids of ``text`` (then end-of-sequence) until the episode ends."""
    tokenizer = env.unwrapped.model.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if eos else [])
    rewards, terminated, truncated, info = [], False, False, {}
    for token in ids:
        _, reward, terminated, truncated, info = env.step(token)
        rewards.append(float(reward))
        if terminated or truncated:
            break
    return rewards, terminated, truncated, info


COUNTDOWN_ANSWERS = [
    ("<think>4 + 5 = 9. 9 + 9 = 18</think>\n<answer>9 + (4 + 5)</answer>", 1.0, "correct"),
    ("<think>hm</think><answer> 5 + 4 + 9 </answer>", 1.0, "correct"),
    ("<answer>9 - 4 + 5</answer>", 0.1, "wrong_value"),
    ("<answer>9 + 9</answer>", 0.1, "wrong_numbers"),
    ("<answer>9 + 4 + 5 = 18</answer>", 0.0, "invalid"),
    ("<answer>18</answer>", 0.1, "wrong_numbers"),
    ("<answer>__import__('os')</answer>", 0.0, "invalid"),
]


@pytest.mark.parametrize(("text", "reward", "status"), COUNTDOWN_ANSWERS)
def test_countdown_rewards_end_to_end(text: str, reward: float, status: str, make) -> None:
    env = make("CoLA-Countdown-Easy-Token-v0")
    _, info = env.reset(options={"task_index": 0})
    assert (info["numbers"], info["target"]) == ([9, 4, 5], 18)
    assert "[9, 4, 5]" in env.unwrapped.prompt_text and "<answer>" in env.unwrapped.prompt_text
    rewards, terminated, truncated, info = _write(env, text + " and then more text")
    assert (rewards[-1], terminated, truncated, info["status"]) == (reward, True, False, status)
    assert sum(rewards) == reward and info["is_success"] == (status == "correct")
    assert info["text"].endswith("</answer>")  # ended as soon as the answer closed


def test_countdown_without_an_answer_earns_nothing(make) -> None:
    env = make("CoLA-Countdown-Easy-Token-v0")
    env.reset(options={"task_index": 0})
    rewards, terminated, _, info = _write(env, "<think>9 + 4 + 5 = 18</think> The answer is 9 + 4 + 5.", eos=True)
    assert (rewards[-1], terminated, info["status"], info["answer"]) == (0.0, True, "no_answer", "")


def test_countdown_format_reward_and_own_puzzles(make) -> None:
    env = make("CoLA-Countdown-Easy-Token-v0", format_reward=0.25)
    _, info = env.reset(options={"numbers": [3, 5, 2], "target": 16})
    assert (info["numbers"], info["target"], info["task_index"]) == ([3, 5, 2], 16, -1)
    assert _write(env, "<answer>3 + 5 + 2</answer>")[0][-1] == 0.25
    env.reset(options={"numbers": np.array([3, 5, 2]).tolist(), "target": np.int64(16)})
    assert _write(env, "<answer>(3 + 5) * 2</answer>")[0][-1] == 1.0
    for bad in ({"numbers": [3], "target": 3}, {"numbers": [3, 5]}, {"numbers": [3, -5], "target": 1},
                {"numbers": [3, 5], "target": 8, "task_index": 0}, {"numbers": [3, 10**9], "target": 3}):  # fmt: skip
        with pytest.raises(ValueError, match="numbers"):
            env.reset(options=bad)


def test_math_think_style(make) -> None:
    env = make("CoLA-GSM8K-Token-v0", prompt_style="think")
    env.reset(options={"task_index": 0})
    assert THINK_INSTRUCTION in env.unwrapped.prompt_text and "boxed" not in env.unwrapped.prompt_text
    rewards, terminated, _, info = _write(env, "<think>16 - 3 - 4 = 9, 9 * 2 = 18</think><answer>18</answer>!!")
    assert (rewards[-1], terminated, info["answer"], info["is_success"]) == (1.0, True, "18", True)
    env.reset(options={"task_index": 0})
    assert _write(env, "<think>no</think><answer>$\\boxed{18}$</answer>")[0][-1] == 1.0
    for text, reward in [("<answer>17</answer>", 0.1), ("<answer>x = 1 = 18</answer>", 0.0), ("\\boxed{18}", 0.0)]:
        env.reset(options={"task_index": 0})
        assert _write(env, text, eos=True)[0][-1] == reward, text
    default = make("CoLA-GSM8K-Token-v0")  # the default style is unchanged
    default.reset(options={"task_index": 0})
    assert "boxed" in default.unwrapped.prompt_text
    assert _write(default, "\\boxed{18}")[0][-1] == 1.0
    with pytest.raises(ValueError, match="prompt_style"):
        make("CoLA-GSM8K-v0", prompt_style="cot")


def test_the_generic_reasoning_id_takes_any_data_set(make) -> None:
    env = make("CoLA-ReasoningGym-Token-v0", dataset="lcm", config={"min_value": 2, "max_value": 6})
    _, info = env.reset(options={"task_index": 3})
    reference = env.unwrapped.episode.task_state.entry["answer"]
    assert "Least Common Multiple" in env.unwrapped.prompt_text
    rewards, terminated, _, info = _write(env, f"The LCM is <answer>{reference}</answer>")
    assert (rewards[-1], terminated, info["is_success"], info["extracted_by"]) == (1.0, True, True, "tag")
    env.reset(options={"task_index": 3})
    rewards, _, _, info = _write(env, f"So it is {reference}.", eos=True)  # the fallback: last number
    assert (rewards[-1], info["extracted_by"], info["answer"]) == (1.0, "last_number", reference)


def test_hostile_and_hedged_answers_end_to_end_through_token_twins(make, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="spiral_matrix"):
        make("CoLA-ReasoningGym-Token-v0", dataset="composite",
             config={"datasets": [{"name": "spiral_matrix", "weight": 1.0, "config": {}}]})  # fmt: skip
    env = make("CoLA-ReasoningGym-Token-v0", dataset="composite", size=8,
               config={"datasets": [{"name": "chain_sum", "weight": 1.0, "config": {}}]})  # fmt: skip
    env.reset(options={"task_index": 0})
    rewards, terminated, _, _ = _write(env, f"<answer>__import__('pathlib').Path({str(marker)!r}).touch()</answer>")
    assert (rewards[-1], terminated, marker.exists()) == (0.0, True, False)
    syllogism = make("CoLA-Syllogism-Easy-Token-v0")
    for index in range(4):
        syllogism.reset(options={"task_index": index})
        rewards, _, _, info = _write(syllogism, "<answer>YesNo</answer>")
        assert (rewards[-1], info["is_success"]) == (0.0, False)
        syllogism.reset(options={"task_index": index})
        assert _write(syllogism, f"<answer>{info['reference']}</answer>")[0][-1] == 1.0


def _fallback_text(reference: str, extractor: str) -> str:
    return {"first_yes_no": f"{reference}, it does.", "last_word": f"It is the {reference}."}.get(
        extractor, f"The result is {reference}"
    )


@pytest.mark.parametrize("env_id", REASONING_IDS)
def test_every_curated_id_scores_right_and_wrong_answers(env_id: str) -> None:
    kwargs = {k: v for k, v in gym.spec(env_id).kwargs.items() if k != "task"}
    task = ReasoningGymTask(**kwargs)
    for index in range(5):
        start = task.begin({"task_index": index}, np.random.default_rng(0))
        reference = str(start.state.entry["answer"])
        right = task.end_turn(start.state, f"<think>...</think><answer>{reference}</answer>")
        assert (right.success, right.reward) == (True, 1.0), (env_id, reference)
        untagged = task.end_turn(start.state, _fallback_text(reference, task.extractor))
        assert untagged.success, (env_id, reference, task.extractor)
        wrong = task.end_turn(start.state, "<answer>banana</answer>")
        assert not wrong.success and wrong.reward < 1.0
        nothing = task.end_turn(start.state, "")
        assert (nothing.success, nothing.reward) == (False, 0.0)


def test_reasoning_sets_are_seeded_and_splits_differ() -> None:
    config = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}
    first, again = ReasoningGymTask("chain_sum", config), ReasoningGymTask("chain_sum", config)
    assert [first.entry(i)["question"] for i in range(20)] == [again.entry(i)["question"] for i in range(20)]
    train = ReasoningGymTask("chain_sum", config, split="train")
    other = ReasoningGymTask("chain_sum", config, seed=5)
    for different in (train, other):
        assert sum(first.entry(i) == different.entry(i) for i in range(20)) <= 2
    assert pickle.loads(pickle.dumps(first)).entry(7) == first.entry(7)
    assert first.num_tasks == 512 and train.num_tasks == 1_000_000


@pytest.mark.timeout(30)
def test_reasoning_gym_scorers_never_run_model_text(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = f"<answer>__import__('pathlib').Path({str(marker)!r}).touch()</answer>"
    countdown = ReasoningGymTask("countdown", {"min_numbers": 3, "max_numbers": 3, "max_target": 100})
    state = countdown.begin({"task_index": 0}, np.random.default_rng(0)).state
    assert countdown.end_turn(state, payload).reward == 0.0 and not marker.exists()
    assert countdown.end_turn(state, "<answer>9**9**9</answer>").reward == 0.0  # returns at once
    assert countdown.end_turn(state, f"<answer>{state.entry['answer']}</answer>").reward == 1.0
    # the library's own scorer pays these; ours does not
    numbers, target = countdown.entry(0)["metadata"]["numbers"], countdown.entry(0)["metadata"]["target"]
    assert countdown.score(f"{'*'.join(map(str, numbers))}!", 0) == 0.0
    assert countdown.score(state.entry["answer"], 0) == 1.0 and target == state.entry["metadata"]["target"]
    puzzle24 = ReasoningGymTask("puzzle24")
    given = puzzle24.entry(0)["metadata"]["numbers"]
    assert puzzle24.score("6*4*1*1", 0) == 0.0 and sorted(given) != [1, 1, 4, 6]
    for unsafe in ("string_insertion", "n_queens", "polynomial_multiplication", "simple_integration"):
        with pytest.raises(ValueError, match=r"is refused: its scorer (calls eval|parses the answer with sympy)"):
            ReasoningGymTask(unsafe)
    primes = ReasoningGymTask("prime_factorization")  # its scorer raises on words: scored 0
    assert primes.score("banana", 0) == 0.0
    assert primes.score("x" * 2000, 0) == 0.0


def test_reasoning_tasks_report_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"has no data set 'chainsum'.*chain_sum"):
        ReasoningGymTask("chainsum")
    with pytest.raises(ValueError, match="bad config for reasoning-gym 'chain_sum'"):
        ReasoningGymTask("chain_sum", {"min_terms": 0})
    with pytest.raises(ValueError, match="bad config"):
        ReasoningGymTask("chain_sum", {"terms": 2})
    with pytest.raises(ValueError, match="not inside config"):
        ReasoningGymTask("chain_sum", {"seed": 3})
    with pytest.raises(ValueError, match="extractor"):
        ReasoningGymTask("chain_sum", extractor="first_number")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt_style"):
        ReasoningGymTask("chain_sum", prompt_style="cot")


@pytest.mark.parametrize("env_id", ["CoLA-Countdown-Easy-v0", "CoLA-ChainSum-Easy-v0"])
def test_vector_env_and_sb3_training(env_id: str, tiny_cola_dir: Path) -> None:
    vector = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", model=str(tiny_cola_dir))
    obs, infos = vector.reset(seed=0)
    assert obs.shape[0] == 3 and len(set(infos["task_index"])) > 1
    for _ in range(5):
        obs, *_ = vector.step(vector.action_space.sample())
    env = make_sb3_env(env_id, n_envs=2, seed=0, model=str(tiny_cola_dir), max_episode_steps=12)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0)
    model.learn(64)
    assert len(model.ep_info_buffer) > 0 and "is_success" in model.ep_info_buffer[0]


@pytest.mark.parametrize(("env_id", "shown"), [("CoLA-Countdown-Medium-v0", "a solution: "),
                                               ("CoLA-LCM-Easy-v0", "reference answer: ")])  # fmt: skip
def test_episode_command(env_id: str, shown: str, tiny_cola_dir: Path, capsys) -> None:
    code = main(["episode", "--env", env_id, "--model", str(tiny_cola_dir), "--max-steps", "4", "--task-index", "1"])
    out = capsys.readouterr().out
    assert code == 0 and shown in out and "=== model output ===" in out


def test_countdown_short_prompts_and_varied_demonstrations() -> None:
    from cola_gym.tasks.countdown.grading import grade_countdown
    from cola_gym.tasks.countdown.puzzles import all_solutions
    from cola_gym.tasks.countdown.task import CountdownTask
    from cola_gym.text.answers import tagged_answer

    level = load_task_specs()["countdown"]["levels"]["medium"]
    canonical = CountdownTask(level=level, split="train", size=200)
    varied = CountdownTask(level=level, split="train", size=200, prompt_style="short", demonstrations="varied")
    differ = 0
    pairs = zip(canonical.demonstrations(), varied.demonstrations(), strict=True)
    for index, ((prompt, answer), (short, other)) in enumerate(pairs):
        puzzle = varied.puzzle(index)
        numbers = " ".join(map(str, puzzle.numbers))
        assert short[0]["content"] == f"Numbers: {numbers}. Target: {puzzle.target}."
        assert f"equals {puzzle.target}." in prompt[0]["content"]  # the same puzzle in TinyZero's words
        assert grade_countdown(tagged_answer(other), puzzle.numbers, puzzle.target).is_correct  # every variant
        differ += answer != other
    assert 20 < differ < 200  # several puzzles have more than one solution, and the draw varies
    assert [s.expression for s in all_solutions([10, 12, 17], 39)] == ["17 + 10 + 12", "12 + 10 + 17", "10 + 12 + 17"]
    assert list(varied.demonstrations())[:5] == list(varied.demonstrations())[:5]  # seeded per puzzle
    with pytest.raises(ValueError, match="prompt_style"):
        CountdownTask(prompt_style="long")
    with pytest.raises(ValueError, match="demonstrations"):
        CountdownTask(demonstrations="random")


def test_countdown_mixed_demonstrations_answer_in_three_styles() -> None:
    from collections import Counter

    from cola_gym.tasks.countdown.expressions import parse_expression
    from cola_gym.tasks.countdown.puzzles import solve
    from cola_gym.tasks.countdown.task import ANSWER_STYLES, CountdownTask, solution_text

    level = load_task_specs()["countdown"]["levels"]["medium"]
    varied = CountdownTask(level=level, split="train", size=300, prompt_style="short", demonstrations="varied")
    mixed = CountdownTask(level=level, split="train", size=300, prompt_style="short", demonstrations="mixed")
    styles: Counter[str] = Counter()
    pairs = zip(varied.demonstrations(), mixed.demonstrations(), strict=True)
    for index, ((_, thought), (_, answer)) in enumerate(pairs):
        puzzle = mixed.puzzle(index)
        state = mixed.begin({"task_index": index}, np.random.default_rng(0)).state
        outcome = mixed.end_turn(state, answer)
        style = "think" if answer.startswith("<think>") else "direct" if answer.startswith("<answer>") else "plain"
        styles[style] += 1
        if style == "plain":  # untagged: never rewarded, however right the expression is
            expression, _, value = answer.rpartition(" = ")
            assert parse_expression(expression).value == puzzle.target == int(value)
            assert outcome.reward == 0.0 and not outcome.success and outcome.state.grade.status == "no_answer"
        else:
            assert outcome.reward == 1.0 and outcome.success
        if style == "think":  # the same solution draw as "varied"
            assert answer == thought
    assert set(styles) == set(ANSWER_STYLES) and min(styles.values()) > 60  # about a third each
    assert list(mixed.demonstrations())[:5] == list(mixed.demonstrations())[:5]
    with pytest.raises(ValueError, match="style"):
        solution_text(solve([3, 5, 2], 16), "essay")
