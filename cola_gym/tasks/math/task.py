r"""Math word problems (MATH-500, MATH, GSM8K) as a task.

The prompt is the problem plus the data set's instruction, through the model's chat
template. The episode terminates at an end-of-sequence token or as soon as the answer is
complete (a closed ``\boxed{}``, or a ``#### n`` line for GSM8K). The last step's reward is
1 when the answer is right and 0 otherwise; a truncated episode earns 0.

With ``prompt_style="think"`` the instruction asks for reasoning inside ``<think>`` tags and
the final answer inside ``<answer>`` tags (the format of the Countdown and reasoning tasks):
the episode ends at ``</answer>``, and a gradable but wrong tagged answer earns
``format_reward`` (default 0.1).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from cola_gym.envs.task import TASK_INDEX, Task, TaskStart, TurnOutcome
from cola_gym.tasks.math.data import MathDataset, MathProblem, load_math_problems
from cola_gym.tasks.math.grading import MathGrade, answer_is_complete, answers_match, grade_text, last_boxed
from cola_gym.text.answers import THINK_INSTRUCTION, AnswerProtocol, tagged_answer
from cola_gym.text.chat import Message

PROMPT_STYLES = ("default", "think")

_CALCULATOR = re.compile(r"<<[^<>]*>>")
_FINAL_HASH = re.compile(r"\n?####\s*(.+?)\s*$")


@dataclass(frozen=True)
class MathState:
    """A math episode's state: the problem, and the graded answer once there is one."""

    problem: MathProblem
    answer: str = ""
    is_correct: bool = False


class MathTask(Task[MathState]):
    """Solve a math problem, one latent action per token.

    Args:
        dataset: the data set definition (a table of ``cola_gym/tasks/math/spec.toml`` or a
            :class:`~cola_gym.tasks.math.data.MathDataset`).
        split: ``"test"`` or ``"train"`` (where the data set has it).
        data_dir: folder holding the data files; else ``$COLA_DATA_DIR``, else the Hub.
        prompt_style: ``"default"`` (the data set's instruction: a boxed answer) or
            ``"think"`` (``<think>`` then ``<answer>`` tags).
        format_reward: with ``"think"``, the reward of a gradable tagged answer that is wrong.
        difficulty: only the problems of this difficulty (an int, or ``[low, high]``
            inclusive), as the data set reads it (MATH's level 1-5, GSM8K's solution steps);
            they are renumbered ``0..n-1`` in their order in the split.

    Reset options: ``task_index`` (alias ``problem_index``) picks a problem;
    ``{"problem": text, "answer": reference}`` poses your own (index -1); otherwise the
    problem is drawn from the env's seeded RNG.

    ``info`` adds ``answer`` (the extracted answer, ``""`` until the episode ends),
    ``is_correct`` (the same as ``is_success``) and ``problem_index`` (= ``task_index``).
    """

    info_keys: ClassVar[tuple[str, ...]] = ("answer", "is_correct", "problem_index")
    option_keys: ClassVar[tuple[str, ...]] = ("problem", "answer")
    option_aliases: ClassVar[Mapping[str, str]] = {"problem_index": TASK_INDEX}

    def __init__(
        self,
        dataset: Mapping[str, Any] | MathDataset,
        split: str = "test",
        data_dir: str | os.PathLike[str] | None = None,
        prompt_style: str = "default",
        format_reward: float = 0.1,
        difficulty: int | Sequence[int] | None = None,
    ) -> None:
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
        think = AnswerProtocol(THINK_INSTRUCTION, float(format_reward))
        self.answers = think if prompt_style == "think" else None
        """The tagged answer protocol of the ``"think"`` style (``None``: a boxed answer)."""
        self.prompt_style = prompt_style
        self.format_reward = float(format_reward)
        self.dataset = MathDataset.from_spec(dataset)
        self.split = split
        self.data_dir = data_dir
        self.difficulty = _difficulty_range(difficulty, self.dataset)
        self.problems: tuple[MathProblem, ...] = self._load()

    def _load(self) -> tuple[MathProblem, ...]:
        problems = load_math_problems(self.dataset, self.split, self.data_dir)
        if self.difficulty is None:
            return problems
        low, high = self.difficulty
        kept = [p for p in problems if p.difficulty is not None and low <= p.difficulty <= high]
        if not kept:
            raise ValueError(f"{self.dataset.name}/{self.split} has no problem of difficulty {low}-{high}")
        return tuple(replace(problem, index=index) for index, problem in enumerate(kept))

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "problems"}  # reloaded from the process cache

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.problems = self._load()

    @property
    def num_tasks(self) -> int:
        return len(self.problems)

    def check_options(self, options: Any) -> dict[str, Any]:
        checked = super().check_options(options)
        if "problem" in checked or "answer" in checked:
            problem, answer = checked.get("problem"), checked.get("answer")
            if not isinstance(problem, str) or not isinstance(answer, str) or not problem.strip() or not answer.strip():
                raise ValueError("options['problem'] needs options['answer'] too; both non-empty strings")
            if TASK_INDEX in checked:
                raise ValueError(f"give either options['problem'] or options['{TASK_INDEX}'], not both")
        return checked

    def begin(self, options: Mapping[str, Any], rng: np.random.Generator) -> TaskStart[MathState]:
        if "problem" in options:
            problem = MathProblem(index=-1, problem=options["problem"], answer=options["answer"].strip())
        else:
            index = options.get(TASK_INDEX)
            problem = self.problems[int(rng.integers(len(self.problems))) if index is None else index]
        return TaskStart(MathState(problem), tuple(self.prompt(problem.problem)), problem.index)

    def prompt(self, problem: str) -> list[Message]:
        """The prompt messages of ``problem``: the one place both envs and training data get them."""
        if self.answers is not None:
            return [{"role": "user", "content": self.answers.pose(problem)}]
        instruction = self.dataset.instruction
        return [{"role": "user", "content": f"{problem}\n{instruction}" if instruction else problem}]

    def turn_complete(self, state: MathState, turn_text: str) -> bool:
        if self.answers is not None:
            return self.answers.is_complete(turn_text)
        return answer_is_complete(turn_text, self.dataset.answer_format)

    def end_turn(self, state: MathState, turn_text: str) -> TurnOutcome[MathState]:
        if self.answers is not None:
            grade = grade_tagged(turn_text, state.problem.answer)
            reward = self.answers.reward(float(grade.is_correct), well_formed=grade.status == "ok")
        else:
            grade = grade_text(turn_text, state.problem.answer, self.dataset.answer_format)
            reward = float(grade.is_correct)
        graded = replace(state, answer=grade.answer or "", is_correct=grade.is_correct)
        return TurnOutcome(graded, reward=reward, terminated=True, success=grade.is_correct)

    def info(self, state: MathState) -> dict[str, Any]:
        return {"answer": state.answer, "is_correct": state.is_correct, "problem_index": state.problem.index}

    def describe(self, state: MathState) -> str:
        return f"{state.problem.problem}\n\nreference answer: {state.problem.answer}"

    def demonstrations(self) -> Iterable[tuple[Sequence[Message], str]]:
        """Each problem's worked solution (GSM8K's in the env's format: :func:`gsm8k_solution_as_text`)."""
        for problem in self.problems:
            if problem.solution is None:
                raise ValueError(
                    f"{self.dataset.name}/{self.split} has reference answers but no worked solutions to train on"
                )
            solution = problem.solution
            if self.dataset.answer_format == "gsm8k":
                solution = gsm8k_solution_as_text(solution)
            if self.prompt_style == "think":
                solution = f"<think>{solution}</think>\n<answer>{problem.answer}</answer>"
            yield self.prompt(problem.problem), solution


def _difficulty_range(difficulty: int | Sequence[int] | None, dataset: MathDataset) -> tuple[int, int] | None:
    if difficulty is None:
        return None
    if not dataset.difficulty:
        raise ValueError(f"{dataset.name} states no difficulty: it cannot be sliced by difficulty")
    bounds = [difficulty, difficulty] if isinstance(difficulty, int) else list(difficulty)
    if (
        len(bounds) != 2
        or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
        or bounds[0] > bounds[1]
    ):
        raise ValueError(f"difficulty must be an int or [low, high] with low <= high, got {difficulty!r}")
    return bounds[0], bounds[1]


def grade_tagged(text: str, gold: str) -> MathGrade:
    r"""Grades the last ``<answer>`` of ``text`` (a ``\boxed{}`` inside it is unwrapped).

    >>> grade_tagged("<think>2 + 2</think><answer>4</answer>", "4").is_correct
    True
    >>> grade_tagged("<think>2 + 2</think>4", "4").status
    'no_answer'
    """
    answer = tagged_answer(text)
    if not answer:
        return MathGrade(None, False, "no_answer")
    return answers_match(last_boxed(answer) or answer, gold)


def gsm8k_solution_as_text(answer: str) -> str:
    r"""A GSM8K answer in the env's format: calculator marks removed, ``#### n`` -> ``\boxed{n}``.

    >>> gsm8k_solution_as_text("She sold 48/2 = <<48/2=24>>24 clips.\n#### 24")
    'She sold 48/2 = 24 clips.\nThe final answer is $\\boxed{24}$.'
    """
    text = _CALCULATOR.sub("", answer)
    return _FINAL_HASH.sub(lambda m: f"\nThe final answer is $\\boxed{{{m.group(1)}}}$.", text).strip()
