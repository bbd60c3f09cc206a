"""The micro math tier's word problems: exact by construction, held-out by split, graded by the math grader."""

from __future__ import annotations

import re

import gymnasium as gym
import pytest

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.registration import task_for
from cola_gym.tasks.math.word_problems import (
    ANSWER_STYLES,
    Step,
    WordProblem,
    WordProblemLevel,
    generate_problem,
    solution_text,
)
from cola_gym.tasks.math.word_task import WordProblemTask

LEVELS = ("Easy", "Medium", "Hard")
APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a // b}


@pytest.mark.parametrize("level", LEVELS)
def test_every_problem_is_exact_and_within_its_level(level: str) -> None:
    task = task_for(f"CoLA-Micro-Math-{level}-v0")
    spec = task.level
    for index in range(500):
        problem = task.problem(index)
        assert spec.min_operations <= len(problem.steps) <= spec.max_operations
        value = problem.start
        for step in problem.steps:
            assert step.operator in spec.operators and step.before == value
            assert step.operator != "/" or value % step.operand == 0  # divisions are exact
            value = APPLY[step.operator](value, step.operand)
            assert 0 < value <= spec.max_value and step.after == value
        assert problem.answer == value
        numbers = [int(n) for n in re.findall(r"\d+", problem.text)]
        assert numbers == [problem.start, *(s.operand for s in problem.steps)]  # the text states the chain


@pytest.mark.parametrize("level", LEVELS)
def test_train_problems_never_repeat_a_test_problems_arithmetic(level: str) -> None:
    test = {task_for(f"CoLA-Micro-Math-{level}-v0").problem(i).key for i in range(256)}
    train = task_for(f"CoLA-Micro-Math-{level}-Train-v0")
    assert not test & {train.problem(i).key for i in range(3000)}


def test_a_set_is_fixed_by_its_seed_and_seeds_differ() -> None:
    level = WordProblemLevel(min_operations=2, max_operations=3, operators=("+", "-", "*"))
    first = [generate_problem(level, 5, i) for i in range(20)]
    assert first == [generate_problem(level, 5, i) for i in range(20)]
    assert first != [generate_problem(level, 6, i) for i in range(20)]


def test_demonstrations_mix_the_answer_styles() -> None:
    task = WordProblemTask(level={"min_operations": 2, "max_operations": 2}, size=300, demonstrations="mixed")
    texts = [text for _, text in task.demonstrations()]
    boxed = sum("\\boxed{" in t for t in texts)
    hashed = sum("\n#### " in t for t in texts)
    direct = sum(t.startswith("The final answer") for t in texts)
    assert boxed + hashed == 300 and min(hashed, direct, boxed - direct) > 60  # each style about a third
    plain = WordProblemTask(level={"min_operations": 2, "max_operations": 2}, size=20)
    for (prompt, text), index in zip(plain.demonstrations(), range(20), strict=True):
        problem = plain.problem(index)
        assert prompt[0]["content"].startswith(problem.text) and prompt[0]["content"].endswith("\\boxed{}.")
        assert text == solution_text(problem, "steps")


ANSWERS = [  # (the model's text, reward) for a problem whose answer is 40
    (r"23 + 17 = 40. The final answer is $\boxed{40}$.", 1.0),
    (r"\boxed{40}", 1.0),
    (r"\boxed{x = 40}", 1.0),
    (r"\boxed{40.0}", 1.0),
    (r"\boxed{41}", 0.0),
    ("23 + 17 = 40.\n#### 40", 0.0),  # GSM8K's form: not what the prompt asks for
    ("The answer is 40.", 0.0),
    (r"\boxed{40 or 41}", 0.0),  # a hedge
    (r"\boxed{40, 41}", 0.0),  # a list
    (r"\boxed{41 = 40}", 0.0),  # a relation
    (r"\boxed{40} and \boxed{41}", 0.0),  # two different answers (ambiguous)
    (r"\boxed{__import__('os').system('true')}", 0.0),  # text, never run
]


@pytest.mark.parametrize(("text", "reward"), ANSWERS)
def test_what_counts_as_an_answer(text: str, reward: float) -> None:
    task = task_for("CoLA-Micro-Math-Easy-v0")
    state = task.begin({"task_index": 3}, None).state  # type: ignore[arg-type]
    assert state.problem.answer == "40"
    outcome = task.end_turn(state, text)
    assert (outcome.reward, outcome.success, outcome.terminated) == (reward, reward == 1.0, True)


def test_the_env_ends_at_a_boxed_answer_and_pays_it(speller) -> None:
    model, spell = speller
    env = gym.make("CoLA-Micro-Math-Easy-v0", model=model)
    env.reset(options={"task_index": 3})
    reward, terminated, info = 0.0, False, {}
    for action in spell(r"23 + 17 = 40. The final answer is $\boxed{40}$. More"):
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert (reward, terminated, info["answer"], info["is_correct"]) == (1.0, True, "40", True)
    assert "More" not in info["text"]  # it stopped at the closed box
    env.reset(options={"task_index": 3})
    for action in spell("23 + 17 = 40.\n#### 40\n"):
        _, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated) == (0.0, False)  # a #### line does not end the turn: it is not the answer


def test_bad_levels_and_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown word-problem level keys"):
        WordProblemLevel.from_spec({"operations": 2})
    with pytest.raises(ValueError, match="operators must be some of"):
        WordProblemLevel(operators=("^",))
    with pytest.raises(ValueError, match="min_operations <= max_operations"):
        WordProblemLevel(min_operations=3, max_operations=2)
    with pytest.raises(ValueError, match="demonstrations must be one of"):
        WordProblemTask(demonstrations="boxed")
    with pytest.raises(ValueError, match="split must be one of"):
        WordProblemTask(split="valid")
    with pytest.raises(ValueError, match="style must be one of"):
        solution_text(WordProblem("", 2, 1, (Step("+", 1, 1, 2),)), "latex")
    assert len(ANSWER_STYLES) == 3
